"""What every FastAPI service of ModelServe starts from: GET /health (liveness), GET /ready
(readiness), request ids, JSON errors, its logging, its garbage collector settled once it
has started, and a uvicorn runner that drains requests in flight at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
import uvloop
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from pydantic import BaseModel

from modelserve.common import __version__, collector, logs
from modelserve.common.errors import install_error_handlers
from modelserve.common.readiness import Readiness, ReadinessCache, readiness
from modelserve.common.request_ids import RequestIds
from modelserve.common.settings import ServiceSettings

# What uvicorn's own handler takes: Ctrl+C and `kill`.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long a worker process may leave the supervisor's ping unanswered before it is
# killed and started again. uvicorn's 5 s is shorter than a spawned worker takes to
# import the service on a busy machine (9 s seen with 2 cores under a load of 13): it
# killed every worker before it could answer, over and over. A hung worker is still
# caught, later; a pod's liveness probe catches the rest.
WORKER_HEALTHCHECK_SECONDS = 60


# FastAPI's own OpenTelemetry spans, metrics and logs, off: a service's spans are its
# TraceContext middleware's (common/trace_context.py), and a second server span per
# request would come from FastAPI's whenever a global tracer provider is set. Left on,
# FastAPI also asks OpenTelemetry for its global providers on every request, which
# reads the environment: about 3% of the gateway's CPU on a proxied request.
NO_FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class Health(BaseModel):
    status: str
    service: str
    version: str


def create_service_app(
    service: str, settings: ServiceSettings, *, own_health: bool = False, **fastapi_options: Any
) -> FastAPI:
    """A FastAPI app with the service's settings in `app.state`, request ids, JSON errors,
    a token-free /health (unless the service has its own: `own_health`) and /ready (the
    checks the lifespan puts in `app.state.readiness`). `fastapi_options` go to FastAPI;
    a `lifespan` among them runs its startup first, then the heap it built is settled
    (`collector`: frozen, the young generation collected less often)."""
    startup = fastapi_options.pop("lifespan", None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The service's own startup, then the heap it built settled (`collector`).
        async with contextlib.AsyncExitStack() as stack:
            if startup is not None:
                await stack.enter_async_context(startup(app))
            collector.settle(settings.gc_young_threshold)
            yield

    app = FastAPI(
        title=f"ModelServe {service}",
        version=__version__,
        telemetry=NO_FASTAPI_TELEMETRY,
        lifespan=lifespan,
        **fastapi_options,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.readiness_cache = ReadinessCache()
    app.add_middleware(RequestIds)
    install_error_handlers(app)
    if not own_health:

        @app.get("/health", tags=["health"])
        async def health() -> Health:
            """Liveness: the process answers. No dependency is asked."""
            return Health(status="ok", service=service, version=__version__)

    @app.get(
        "/ready",
        tags=["health"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "a check failed"}},
    )
    async def ready(request: Request) -> JSONResponse:
        """Readiness: 200 when every check of this service passes, else 503 naming each
        failing check and why. Calls share one evaluation, reused for about a second
        (`ReadinessCache`): anyone may call it."""
        state = request.app.state
        cache: ReadinessCache = state.readiness_cache
        found = await cache.get(lambda: readiness(getattr(state, "readiness", None)))
        status = 200 if found.status == "ready" else 503
        return JSONResponse(found.model_dump(), status_code=status)

    return app


def configure_logging(settings: ServiceSettings, service: str) -> None:
    """The service's logs (and uvicorn's) at its level, in its format (`logs`)."""
    logs.configure_logging(service, settings.log_level, settings.log_format)


def server_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn's options for every server of a service: its logs through the handler of
    `configure_logging` (no configuration of uvicorn's own), and the grace that requests
    in flight get after SIGTERM, while no new connection is accepted."""
    return {
        "host": settings.host,
        "log_level": settings.log_level,
        "log_config": None,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
    }


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    configure_logging(settings, getattr(app.state, "service", app.title))
    uvicorn.run(app, port=settings.port, **server_options(settings))


def serve_workers(factory: str, settings: ServiceSettings, service: str, workers: int) -> None:
    """`workers` processes serving one port, as uvicorn runs them: this process binds the
    socket and supervises (a worker that dies is started again), each worker builds its
    own app by calling `factory` ("module:function", imported anew in the worker: workers
    are spawned, not forked) and runs its lifespan. SIGTERM here reaches every worker,
    which drains within the service's grace like a single process.

    A worker's logging is its own: `factory` must configure it (`configure_logging`)."""
    configure_logging(settings, service)
    uvicorn.run(
        factory,
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        port=settings.port,
        **server_options(settings),
    )


class _SignalledServer(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve_all`. Each `Server.serve()` installs
    its own handlers for SIGINT and SIGTERM, so of several in one process only the last
    one's would run: it alone would drain, while the others kept accepting connections,
    and then raise the signal again for the next, each with a grace of its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve_all(configs: list[uvicorn.Config]) -> None:
    """Several uvicorn servers in one process and event loop (uvloop, as `uvicorn.run`
    would pick): for example an API over HTTP and the same app over HTTPS. Only the
    first should run the app's lifespan (`lifespan="off"` on the others).

    One handler serves them all: SIGTERM (or SIGINT) makes every server stop accepting
    and drain at once, within the one grace; a second signal cuts what is left. Once all
    have shut down the first signal is raised again, as uvicorn does, so the exit status
    says what ended the process."""
    servers = [_SignalledServer(config) for config in configs]
    received: list[int] = []

    def handle(sig: int) -> None:
        received.append(sig)
        for server in servers:
            server.should_exit = True
            server.force_exit = len(received) > 1

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, handle, sig)
        try:
            await asyncio.gather(*(server.serve() for server in servers))
        finally:
            for sig in HANDLED_SIGNALS:
                loop.remove_signal_handler(sig)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())
    if received:
        signal.raise_signal(received[0])
