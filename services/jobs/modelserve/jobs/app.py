"""The jobs service's FastAPI application: /jobs, and the worker beside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from modelserve.common.database import DatabaseUnavailable, open_pool
from modelserve.common.errors import answer_unavailable
from modelserve.common.objects import ObjectStore
from modelserve.common.service import create_service_app
from modelserve.common.supervision import start_supervised
from modelserve.common.tokens import TokenSigner, TokenVerifier
from modelserve.jobs.executors import Executor
from modelserve.jobs.gateway import GatewayClient
from modelserve.jobs.kinds import JobKind, job_kinds, routers
from modelserve.jobs.outputs import OutputWriter
from modelserve.jobs.routes import jobs
from modelserve.jobs.schema import create_schema
from modelserve.jobs.settings import JobsSettings
from modelserve.jobs.store import JobStore
from modelserve.jobs.worker import Worker


def build_kinds(settings: JobsSettings, http: httpx.AsyncClient) -> list[JobKind]:
    """The job types this replica runs: none without a gateway to send items to (it
    still answers its routes)."""
    if not settings.gateway_url:
        return []
    signer = TokenSigner.from_settings(settings.tokens)
    return job_kinds(GatewayClient(http, settings.gateway_url, signer))


def build_executors(settings: JobsSettings, http: httpx.AsyncClient) -> dict[str, Executor]:
    """The executors this replica runs, by job type."""
    return {kind.name: kind.executor for kind in build_kinds(settings, http)}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: JobsSettings = app.state.settings
    url = settings.database_url.get_secret_value()
    await asyncio.to_thread(create_schema, url)
    limits = httpx.Limits(max_connections=settings.concurrency + 4)
    timeout = httpx.Timeout(settings.gateway_timeout_seconds, connect=10.0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        app.state.verifier = TokenVerifier.from_settings(settings.tokens, http)
        pool = await open_pool(url, size=settings.database_pool_size, wait=5.0)
        store = JobStore(pool)
        app.state.store = store
        config = settings.store()
        objects = ObjectStore("platform", config, connections=4) if config else None
        kinds = build_kinds(settings, http)
        finishers = {kind.name: kind.finisher for kind in kinds if kind.finisher is not None}
        outputs = (
            OutputWriter(store.pool, objects, settings.store_bucket, finishers) if objects else None
        )
        app.state.objects = objects
        executors = {kind.name: kind.executor for kind in kinds}
        # Supervised: a worker that fails is logged and started again (its items' leases
        # run out meanwhile and they are taken again, here or elsewhere).
        worker = start_supervised("jobs-worker", Worker(settings, store, executors, outputs).run)
        try:
            yield
        finally:
            worker.cancel()
            await asyncio.wait({worker})
            await pool.close()
            if objects is not None:
                objects.close()


def create_app(settings: JobsSettings) -> FastAPI:
    app = create_service_app("jobs", settings, lifespan=lifespan)
    answer_unavailable(app, DatabaseUnavailable, "database_unavailable")
    app.include_router(jobs.router)
    for router in routers():
        app.include_router(router)
    return app
