"""The download service's FastAPI application: the API, and the workers beside it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from modelserve.common.database import DatabaseUnavailable
from modelserve.common.errors import answer_unavailable
from modelserve.common.objects import ObjectStore
from modelserve.common.readiness import database_check
from modelserve.common.service import create_service_app
from modelserve.common.service_metrics import RequestTimer
from modelserve.common.tokens import TokenVerifier
from modelserve.download.jobs import Jobs
from modelserve.download.metrics import DownloadMetrics
from modelserve.download.presigning import Presigner
from modelserve.download.registry import Registry
from modelserve.download.routes import (
    active,
    downloads,
    metrics,
    models,
    registrations,
    uploads,
)
from modelserve.download.settings import DownloadSettings
from modelserve.download.versions import Versions
from modelserve.download.worker import Workers

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: DownloadSettings = app.state.settings
    connections = settings.jobs * settings.parallel_parts + 2
    upstream = ObjectStore("upstream", settings.upstream(), connections)
    platform = ObjectStore("platform", settings.platform(), connections)
    async with httpx.AsyncClient(timeout=10.0) as http:
        app.state.http = http
        app.state.verifier = TokenVerifier.from_settings(settings.tokens, http)
        jobs = await Jobs.open(
            settings.database_url.get_secret_value(),
            settings.database_pool_size,
            migrate=settings.migrate,
        )
        app.state.jobs = jobs
        # The stores are not checked: only a request to one would tell, and each has its
        # own retries; their outage is a 503 of the route that needs them.
        app.state.readiness = {"database": database_check(jobs.pool)}
        # The registry: registrations, uploads (signed for the endpoint clients reach) and
        # active versions, on the jobs' connections; the platform store for the checks
        # the routes make before queueing.
        app.state.registry = Registry(jobs.pool)
        app.state.versions = Versions(jobs.pool)
        app.state.platform = platform
        app.state.presigner = Presigner(
            settings.platform_public(), dt.timedelta(seconds=settings.upload_url_seconds)
        )
        workers = asyncio.create_task(
            Workers(settings, jobs, upstream, platform, app.state.metrics).run()
        )
        workers.add_done_callback(_exit_unless_cancelled)
        try:
            yield
        finally:
            workers.cancel()
            # Waited for, not awaited: workers that ended with an error were logged by
            # `_exit_unless_cancelled` already.
            await asyncio.wait({workers})
            await jobs.close()
            upstream.close()
            platform.close()


def _exit_unless_cancelled(workers: asyncio.Task[None]) -> None:
    """The workers run until shut down (their loops are supervised); should they end all
    the same, the process stops, so that it is restarted rather than serving without
    anyone to do the downloads."""
    if workers.cancelled():
        return
    logger.critical("the download workers ended: stopping", exc_info=workers.exception())
    signal.raise_signal(signal.SIGTERM)


def create_app(settings: DownloadSettings) -> FastAPI:
    app = create_service_app("download", settings, lifespan=lifespan)
    app.state.metrics = DownloadMetrics()
    app.add_middleware(RequestTimer, histogram=app.state.metrics.requests)
    answer_unavailable(app, DatabaseUnavailable, "database_unavailable")
    app.include_router(downloads.router)
    app.include_router(metrics.router)
    # Before `models`: /models/active, /models/history, ... are not model ids.
    app.include_router(registrations.router)
    app.include_router(uploads.router)
    app.include_router(active.router)
    app.include_router(models.router)
    return app
