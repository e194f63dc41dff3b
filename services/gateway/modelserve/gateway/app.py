"""The gateway's FastAPI application.

Each component opens in the lifespan, in order, and closes in reverse; routes reach
them through the aliases of `deps`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from modelserve.common.service import create_service_app
from modelserve.common.tokens import TokenVerifier
from modelserve.gateway.kube import load_api_client
from modelserve.gateway.settings import GatewaySettings


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: GatewaySettings = app.state.settings
    async with contextlib.AsyncExitStack() as stack:
        # Calls to the platform's own services (contract, download, a JWKS): not the
        # proxy's client, which has its own limits.
        services = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
        app.state.services = services
        app.state.verifier = TokenVerifier.from_settings(settings.tokens, services)
        # Kubernetes (None without a cluster): servers are ModelServes, routes come from them.
        kube = load_api_client(settings)
        if kube is not None:
            stack.callback(kube.close)
        app.state.kube = kube
        # components: each opens here and pushes its close on `stack`.
        yield


def create_app(settings: GatewaySettings) -> FastAPI:
    app = create_service_app("gateway", settings, lifespan=lifespan)
    # routers: one per resource.
    return app
