"""GET /health: the gateway is up, and which models are loaded (the seeds' shape).

Token-free, as probes and load balancers call it: without a token it lists the
platform's models only (those in GATEWAY_PLATFORM_NAMESPACES, which everyone may use),
never a tenant's. With a valid token it lists the caller's models, as /v1/models does.
A token that does not verify is not an error here (a probe must not fail on it): the
answer is the token-free one.

    {"status": "ok", "service": "gateway", "version": "…",
     "loaded_models": ["qwen"], "available_models": ["qwen", "llama"],
     "models": [{"id": "llama", "state": "sleeping", "last_used": 1735787045.5}, …]}
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from modelserve.common import __version__
from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims
from modelserve.gateway.auth import authenticate
from modelserve.gateway.deps import BookDep, ContractsDep, RoutesDep
from modelserve.gateway.loading.listing import health_lists, status_of
from modelserve.gateway.routes.openai import usable_targets
from modelserve.gateway.routing import Target

router = APIRouter(tags=["health"])


async def _caller(request: Request) -> Claims | None:
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    try:
        return await authenticate(request, authorization)
    except ApiError:
        return None


@router.get("/health")
async def health(
    request: Request, routes: RoutesDep, book: BookDep, contracts: ContractsDep
) -> dict[str, Any]:
    claims = await _caller(request)
    servers: dict[str, list[Target]] = {}
    if claims is None:
        for target in routes.servers():
            if target.platform:
                servers.setdefault(target.served_name, []).append(target)
    else:
        for target in await usable_targets(claims, routes, contracts):
            servers[target.served_name] = routes.nearest(target.served_name, claims)
    statuses = {name: status_of(found, routes, book) for name, found in servers.items()}
    return {"status": "ok", "service": "gateway", "version": __version__, **health_lists(statuses)}
