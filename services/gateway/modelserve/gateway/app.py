"""The gateway service's FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from modelserve.common.service import create_service_app
from modelserve.gateway.settings import GatewaySettings


def create_app(settings: GatewaySettings) -> FastAPI:
    return create_service_app("gateway", settings)
