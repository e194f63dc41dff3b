"""The contract service's FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from modelserve.common.database import DatabaseUnavailable
from modelserve.common.errors import answer_unavailable
from modelserve.common.service import create_service_app
from modelserve.common.tokens import TokenVerifier
from modelserve.contract.decisions import ContractBook, Decider, default_limits
from modelserve.contract.inventory import Inventory, load_api_client
from modelserve.contract.routes import admission, contracts, decide, usage
from modelserve.contract.settings import ContractSettings
from modelserve.contract.store import Store

logger = logging.getLogger(__name__)


async def _release_expired(store: Store, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await store.release_expired()
        except DatabaseUnavailable as error:
            logger.warning("expired reservations not released yet: %s", error)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ContractSettings = app.state.settings
    async with httpx.AsyncClient(timeout=5.0) as http:
        app.state.verifier = TokenVerifier.from_settings(settings.tokens, http)
        store = await Store.open(
            settings.database_url.get_secret_value(),
            settings.database_pool_size,
            settings.database_timeout,
        )
        decider = Decider(settings, store, ContractBook(default_limits(settings)))
        await decider.reload()
        app.state.decider = decider
        tasks = [
            asyncio.create_task(store.listen(decider.reload)),
            asyncio.create_task(_release_expired(store, min(60.0, settings.reservation_seconds))),
        ]
        api = None
        if settings.inventory_seconds > 0:
            api = load_api_client()
            inventory = Inventory(
                store, api, settings.inventory_seconds, settings.inventory_grace_seconds
            )
            tasks.append(asyncio.create_task(inventory.run()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()
            if api is not None:
                api.close()


def create_app(settings: ContractSettings) -> FastAPI:
    app = create_service_app("contract", settings, lifespan=lifespan)
    # Nothing is decided without the database (fail closed); the client may retry.
    answer_unavailable(app, DatabaseUnavailable, "policy_store_unavailable")
    for module in (decide, usage, contracts, admission):
        app.include_router(module.router)
    return app
