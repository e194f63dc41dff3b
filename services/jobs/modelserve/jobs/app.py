"""The jobs service's FastAPI application: /jobs, and the worker beside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modelserve.common.body_limit import BodyLimit
from modelserve.common.database import DatabaseUnavailable, open_pool
from modelserve.common.errors import answer_unavailable, error_body
from modelserve.common.objects import ObjectStore
from modelserve.common.readiness import database_check, http_check
from modelserve.common.request_ids import carry_request_id
from modelserve.common.service import create_service_app
from modelserve.common.supervision import start_supervised
from modelserve.common.tokens import TokenSigner, TokenVerifier
from modelserve.jobs import migrations
from modelserve.jobs.executors import Executor
from modelserve.jobs.gateway import GatewayClient
from modelserve.jobs.kinds import JobKind, job_kinds, routers
from modelserve.jobs.openai_errors import install_openai_errors
from modelserve.jobs.outputs import OutputWriter
from modelserve.jobs.pacing import routes as pacing_routes
from modelserve.jobs.pacing.pacer import Pacer
from modelserve.jobs.pacing.profile import ProfileReader
from modelserve.jobs.routes import jobs
from modelserve.jobs.settings import JobsSettings
from modelserve.jobs.store import JobStore
from modelserve.jobs.worker import Worker, build_pacer


def build_kinds(
    settings: JobsSettings, http: httpx.AsyncClient, pacer: Pacer | None = None
) -> list[JobKind]:
    """The job types this replica runs: none without a gateway to send items to (it
    still answers its routes). The gateway's online signal on items' answers goes to
    `pacer`."""
    if not settings.gateway_url:
        return []
    signer = TokenSigner.from_settings(settings.tokens)
    signals = pacer.observe if pacer is not None else None
    return job_kinds(GatewayClient(http, settings.gateway_url, signer, signals))


def build_executors(
    settings: JobsSettings, http: httpx.AsyncClient, pacer: Pacer | None = None
) -> dict[str, Executor]:
    """The executors this replica runs, by job type."""
    return {kind.name: kind.executor for kind in build_kinds(settings, http, pacer)}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: JobsSettings = app.state.settings
    url = settings.database_url.get_secret_value()
    if settings.migrate:
        # Off the event loop: Alembic is synchronous.
        await asyncio.to_thread(migrations.upgrade, url)
    limits = httpx.Limits(max_connections=settings.concurrency + 4)
    timeout = httpx.Timeout(settings.gateway_timeout_seconds, connect=10.0)
    # Calls to the gateway carry the id of the request they are made for, if any.
    hooks = {"request": [carry_request_id]}
    async with httpx.AsyncClient(timeout=timeout, limits=limits, event_hooks=hooks) as http:
        app.state.verifier = TokenVerifier.from_settings(settings.tokens, http)
        pool = await open_pool(url, size=settings.database_pool_size, wait=5.0)
        checks = {"database": database_check(pool)}
        if settings.gateway_url:
            health = f"{settings.gateway_url.rstrip('/')}/health"
            checks["gateway"] = http_check(http, health, "the gateway")
        app.state.readiness = checks
        store = JobStore(pool)
        app.state.store = store
        config = settings.store()
        objects = ObjectStore("platform", config, connections=4) if config else None
        pacer = build_pacer(settings)
        app.state.pacer = pacer
        kinds = build_kinds(settings, http, pacer)
        finishers = {kind.name: kind.finisher for kind in kinds if kind.finisher is not None}
        outputs = (
            OutputWriter(store.pool, objects, settings.store_bucket, finishers) if objects else None
        )
        app.state.objects = objects
        executors = {kind.name: kind.executor for kind in kinds}
        # Supervised: a worker that fails is logged and started again (its items' leases
        # run out meanwhile and they are taken again, here or elsewhere).
        profile = (
            ProfileReader(http, settings.gateway_url, TokenSigner.from_settings(settings.tokens))
            if settings.gateway_url
            else None
        )
        worker = start_supervised(
            "jobs-worker",
            Worker(settings, store, executors, outputs, pacer=pacer, profile=profile).run,
        )
        try:
            yield
        finally:
            worker.cancel()
            await asyncio.wait({worker})
            await pool.close()
            if objects is not None:
                objects.close()


async def _unstorable(_: Request, error: Exception) -> JSONResponse:
    """Input PostgreSQL cannot take (a NUL character in an id or a field): the caller's
    mistake, 400, never a 500."""
    return JSONResponse(
        error_body("invalid_input", f"the request holds what cannot be stored: {error}"),
        status_code=400,
    )


def create_app(settings: JobsSettings) -> FastAPI:
    app = create_service_app("jobs", settings, lifespan=lifespan)
    # JSON bodies are read whole; an upload streams to the store under its own limit.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, streamed=("/v1/files",))
    answer_unavailable(app, DatabaseUnavailable, "database_unavailable")
    app.add_exception_handler(psycopg.DataError, _unstorable)
    install_openai_errors(app)
    app.include_router(jobs.router)
    app.include_router(pacing_routes.router)
    for router in routers():
        app.include_router(router)
    return app
