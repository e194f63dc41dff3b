"""What every FastAPI service of ModelServe starts from: GET /health and a uvicorn runner."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
import uvloop
from fastapi import FastAPI
from pydantic import BaseModel

from modelserve.common import __version__
from modelserve.common.errors import install_error_handlers
from modelserve.common.settings import ServiceSettings


class Health(BaseModel):
    status: str
    service: str
    version: str


def create_service_app(
    service: str, settings: ServiceSettings, *, own_health: bool = False, **fastapi_options: Any
) -> FastAPI:
    """A FastAPI app with the service's settings in `app.state`, JSON errors and a
    token-free /health (unless the service has its own: `own_health`). `fastapi_options`
    go to FastAPI (a lifespan, for example)."""
    app = FastAPI(title=f"ModelServe {service}", version=__version__, **fastapi_options)
    app.state.settings = settings
    install_error_handlers(app)
    if not own_health:

        @app.get("/health", tags=["health"])
        async def health() -> Health:
            return Health(status="ok", service=service, version=__version__)

    return app


def configure_logging(settings: ServiceSettings) -> None:
    """The service's own loggers at its log level, beside uvicorn's."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    configure_logging(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)


def serve_all(configs: list[uvicorn.Config]) -> None:
    """Several uvicorn servers in one process and event loop (uvloop, as `uvicorn.run`
    would pick): for example an API over HTTP and the same app over HTTPS. Only the
    first should run the app's lifespan (`lifespan="off"` on the others)."""
    servers = [uvicorn.Server(config) for config in configs]

    async def run() -> None:
        await asyncio.gather(*(server.serve() for server in servers))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())
