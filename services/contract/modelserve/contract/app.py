"""The contract service's two FastAPI applications: the API (CONTRACT_PORT) and the
admission webhook (TLS on CONTRACT_WEBHOOK_PORT, only the admission routes), sharing one
store, one decider and the background loops that the API app's lifespan runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modelserve.common.database import DatabaseUnavailable
from modelserve.common.errors import answer_unavailable, error_body, install_error_handlers
from modelserve.common.readiness import database_check
from modelserve.common.request_ids import RequestIds
from modelserve.common.service import NO_FASTAPI_TELEMETRY, create_service_app
from modelserve.common.service_metrics import RequestTimer
from modelserve.common.supervision import start_supervised
from modelserve.common.tokens import TokenVerifier
from modelserve.contract.decisions import ContractBook, Decider, default_limits
from modelserve.contract.inventory import Inventory, load_api_client
from modelserve.contract.metrics import ContractMetrics
from modelserve.contract.routes import admission, contracts, decide, leases, metrics, usage
from modelserve.contract.settings import ContractSettings
from modelserve.contract.store import Store

logger = logging.getLogger(__name__)
# Per-minute counters are read within their minute; older ones are deleted at each round.
COUNTER_MINUTES = 2


async def _housekeeping(store: Store, interval: float) -> None:
    """Expired reservations and leases charged, old per-minute counters deleted."""
    while True:
        await asyncio.sleep(interval)
        try:
            await store.charge_expired()
            await store.delete_old_counters(COUNTER_MINUTES)
        except DatabaseUnavailable as error:
            logger.warning("reservations and counters not cleaned up yet: %s", error)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ContractSettings = app.state.settings
    apps: list[FastAPI] = [app, *app.state.peers]
    async with httpx.AsyncClient(timeout=5.0) as http:
        app.state.verifier = TokenVerifier.from_settings(settings.tokens, http)
        store = await Store.open(
            settings.database_url.get_secret_value(),
            settings.database_pool_size,
            settings.database_timeout,
            migrate=settings.migrate,
        )
        app.state.readiness = {"database": database_check(store.pool)}
        decider = Decider(settings, store, ContractBook(default_limits(settings)))
        await decider.reload()
        tasks = [
            start_supervised("contract reload", lambda: store.listen(decider.reload)),
            start_supervised(
                "reservation charging",
                lambda: _housekeeping(
                    store, min(60.0, settings.reservation_seconds, settings.lease_seconds)
                ),
            ),
        ]
        api = None
        inventory = None
        if settings.inventory_seconds > 0:
            api = load_api_client()
            inventory = Inventory(
                store, api, settings.inventory_seconds, settings.inventory_grace_seconds
            )
            tasks.append(start_supervised("server inventory", inventory.run))
        for each in apps:
            each.state.decider = decider
            each.state.inventory = inventory
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()
            if api is not None:
                api.close()


async def _invalid_value(_: Request, error: Exception) -> JSONResponse:
    """PostgreSQL refused a value (a NUL byte, a number out of its range): the client's."""
    return JSONResponse(error_body("invalid_value", f"a value cannot be stored: {error}"), 422)


def create_webhook_app(settings: ContractSettings) -> FastAPI:
    """Only the admission routes; no documentation, no health route. Its state comes from
    the API app: its metrics from `create_app(settings, webhook)`, its decider and
    inventory from that app's lifespan."""
    app = FastAPI(
        title="ModelServe contract admission",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=NO_FASTAPI_TELEMETRY,
    )
    app.state.settings = settings
    app.add_middleware(RequestIds)
    install_error_handlers(app)
    app.include_router(admission.router)
    return app


def create_app(settings: ContractSettings, *peers: FastAPI) -> FastAPI:
    """The API; its lifespan opens the store and runs the background loops, for itself
    and for `peers` (the webhook app)."""
    app = create_service_app("contract", settings, lifespan=lifespan)
    app.state.peers = list(peers)
    app.state.metrics = ContractMetrics()
    for peer in peers:  # the webhook counts its decisions on the same registry
        peer.state.metrics = app.state.metrics
    app.add_middleware(RequestTimer, histogram=app.state.metrics.requests)
    # Nothing is decided without the database (fail closed); the client may retry.
    answer_unavailable(app, DatabaseUnavailable, "policy_store_unavailable")
    app.add_exception_handler(psycopg.DataError, _invalid_value)
    for module in (decide, leases, usage, contracts, metrics):
        app.include_router(module.router)
    return app
