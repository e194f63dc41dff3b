"""Dependency aliases of the gateway's routes."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Request
from kubernetes import client as k8s

from modelserve.common.errors import ApiError
from modelserve.gateway.settings import GatewaySettings


async def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def _services(request: Request) -> httpx.AsyncClient:
    services: httpx.AsyncClient = request.app.state.services
    return services


async def _kube(request: Request) -> k8s.ApiClient:
    kube: k8s.ApiClient | None = request.app.state.kube
    if kube is None:
        raise ApiError(503, "no_cluster", "this gateway is not connected to a cluster")
    return kube


SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
# The client for the platform's own services (contract, download).
ServicesDep = Annotated[httpx.AsyncClient, Depends(_services)]
# The Kubernetes client; 503 where the gateway has no cluster.
KubeDep = Annotated[k8s.ApiClient, Depends(_kube)]
