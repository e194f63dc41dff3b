"""GET /health: the gateway is up, which models are loaded, the cluster's GPUs and whether
this replica is busy (the seeds' shape).

Token-free, as probes and load balancers call it: without a token it lists the
platform's models only (those in GATEWAY_PLATFORM_NAMESPACES, which everyone may use),
never a tenant's. With a valid token it lists the caller's models, as /v1/models does.
A token that does not verify is not an error here (a probe must not fail on it): the
answer is the token-free one.

    {"status": "ok", "service": "gateway", "version": "…",
     "loaded_models": ["qwen"], "available_models": ["qwen", "llama"],
     "models": [{"id": "llama", "state": "sleeping", "last_used": 1735787045.5}, …],
     "active_model": "qwen", "active_models": ["qwen"],
     "worker_busy": false, "busy": false,
     "gpu": {"available": true, "device_count": 6, "device_name": null, …}}

Seed 003's fields: `active_models` are the loaded models listed here (`loaded_models`);
`active_model` is the one name when exactly one is loaded, else null. `busy` (and the
seed's `worker_busy`): a request in flight or held on this gateway replica for one of
the servers listed here (not for servers the caller may not see). `gpu`: see
`gpus.summary` (cluster-wide counts and GPU types, no tenant data).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from modelserve.common import __version__
from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims
from modelserve.gateway.auth import authenticate
from modelserve.gateway.deps import BookDep, ContractsDep, GpusDep, RoutesDep
from modelserve.gateway.gpus.summary import health_gpu
from modelserve.gateway.loading.listing import health_lists, status_of
from modelserve.gateway.routing import Target
from modelserve.gateway.usable_models import usable_targets

router = APIRouter(tags=["health"])


async def _caller(request: Request) -> Claims | None:
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    try:
        return await authenticate(request, authorization)
    except ApiError:
        return None


@router.get("/health")
async def health(
    request: Request, routes: RoutesDep, book: BookDep, contracts: ContractsDep, gpus: GpusDep
) -> dict[str, Any]:
    claims = await _caller(request)
    servers: dict[str, list[Target]] = {}
    if claims is not None:
        try:
            for target in await usable_targets(claims, routes, contracts):
                servers[target.served_name] = routes.nearest(target.served_name, claims)
        except ApiError:
            # The contract service unreachable: liveness answers as to no token.
            claims = None
    if claims is None:
        for target in routes.servers():
            if target.platform:
                servers.setdefault(target.served_name, []).append(target)
    statuses = {name: status_of(found, routes, book) for name, found in servers.items()}
    lists = health_lists(statuses)
    loaded: list[str] = lists["loaded_models"]
    busy = any(book.load(t.server_id).busy for found in servers.values() for t in found)
    return {
        "status": "ok",
        "service": "gateway",
        "version": __version__,
        **lists,
        "active_model": loaded[0] if len(loaded) == 1 else None,
        "active_models": loaded,
        "worker_busy": busy,
        "busy": busy,
        "gpu": await health_gpu(gpus),
    }
