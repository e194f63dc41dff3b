"""Dependency aliases of the gateway's routes."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Request

from modelserve.gateway.settings import GatewaySettings


async def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def _services(request: Request) -> httpx.AsyncClient:
    services: httpx.AsyncClient = request.app.state.services
    return services


SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
# The client for the platform's own services (contract, download).
ServicesDep = Annotated[httpx.AsyncClient, Depends(_services)]
