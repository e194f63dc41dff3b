"""Dependency aliases of the gateway's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from kubernetes import client as k8s

from modelserve.common.errors import ApiError
from modelserve.gateway.contracts import ContractClient
from modelserve.gateway.gpus.cluster import GpuCluster
from modelserve.gateway.identity import Identity
from modelserve.gateway.kubeservers import ServerStore
from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.proxy import Proxy
from modelserve.gateway.registry.client import RegistryClient
from modelserve.gateway.routing import RouteTable
from modelserve.gateway.settings import GatewaySettings


async def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


SettingsDep = Annotated[GatewaySettings, Depends(_settings)]


async def _registry(request: Request) -> RegistryClient:
    registry: RegistryClient = request.app.state.registry
    return registry


async def _contracts(request: Request) -> ContractClient | None:
    contracts: ContractClient | None = request.app.state.contracts
    return contracts


async def _servers(request: Request) -> ServerStore:
    servers: ServerStore | None = request.app.state.servers
    if servers is None:
        raise ApiError(503, "no_cluster", "this gateway is not connected to a cluster")
    return servers


# The download service: model records and the registry (registry/client.py).
RegistryDep = Annotated[RegistryClient, Depends(_registry)]
# The contract service; None where the gateway has none (then nothing is limited).
ContractsDep = Annotated[ContractClient | None, Depends(_contracts)]
# ModelServes in the namespaces this gateway serves; 503 where it has no cluster.
ServersDep = Annotated[ServerStore, Depends(_servers)]


async def _identity(request: Request) -> Identity:
    identity: Identity = request.app.state.identity
    return identity


# Users, teams and API keys.
IdentityDep = Annotated[Identity, Depends(_identity)]


async def _proxy(request: Request) -> Proxy:
    proxy: Proxy = request.app.state.proxy
    return proxy


async def _routes(request: Request) -> RouteTable:
    routes: RouteTable = request.app.state.routes
    return routes


async def _metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


# The OpenAI proxy; the route table it reads (kept current by discovery); its metrics.
ProxyDep = Annotated[Proxy, Depends(_proxy)]
RoutesDep = Annotated[RouteTable, Depends(_routes)]
MetricsDep = Annotated[GatewayMetrics, Depends(_metrics)]


async def _book(request: Request) -> LoadBook:
    book: LoadBook = request.app.state.proxy.dispatcher.book
    return book


# This replica's requests per server (in flight, held, last used).
BookDep = Annotated[LoadBook, Depends(_book)]


async def _kube(request: Request) -> k8s.ApiClient | None:
    kube: k8s.ApiClient | None = request.app.state.kube
    return kube


# The gateway's one Kubernetes client; None where it has no cluster.
KubeDep = Annotated[k8s.ApiClient | None, Depends(_kube)]


async def _gpus(request: Request) -> GpuCluster | None:
    gpus: GpuCluster | None = request.app.state.gpus
    return gpus


# Reads of the cluster's GPUs, node agent reports and power profile; None without a cluster.
GpusDep = Annotated[GpuCluster | None, Depends(_gpus)]
