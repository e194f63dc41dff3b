"""What every FastAPI service of ModelServe starts from: GET /health and a uvicorn runner."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from modelserve.common import __version__
from modelserve.common.settings import ServiceSettings


class Health(BaseModel):
    status: str
    service: str
    version: str


def create_service_app(service: str, settings: ServiceSettings) -> FastAPI:
    """A FastAPI app with the service's settings in `app.state` and a token-free /health."""
    app = FastAPI(title=f"ModelServe {service}", version=__version__)
    app.state.settings = settings

    @app.get("/health", tags=["health"])
    async def health() -> Health:
        return Health(status="ok", service=service, version=__version__)

    return app


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
