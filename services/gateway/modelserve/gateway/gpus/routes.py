"""GET /gpu, GET and POST /settings/power_profile.

Each needs a token: /gpu names the servers the caller may use and counts the others'
GPUs without naming them; anyone signed in may read the power profile, only admins may
choose one (it sets every GPU node's power limit and the platform's job concurrency).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from modelserve.common.errors import ApiError
from modelserve.common.power_profiles import (
    PROFILE_NAMES,
    build_configmap_data,
    current_profile,
)
from modelserve.gateway.auth import Admin, Caller
from modelserve.gateway.deps import GpusDep, RoutesDep, SettingsDep
from modelserve.gateway.gpus.cluster import ClusterUnreadable, GpuCluster
from modelserve.gateway.gpus.inventory import build_inventory, is_gpu_node
from modelserve.gateway.gpus.power import configured_profiles, power_view, unknown_profile_message
from modelserve.gateway.settings import GatewaySettings

router = APIRouter(tags=["gpus"])


def cluster_of(cluster: GpuCluster | None) -> GpuCluster:
    if cluster is None:
        raise ApiError(503, "no_cluster", "this gateway is not connected to a cluster")
    return cluster


def unreadable(error: ClusterUnreadable) -> ApiError:
    return ApiError(503, "cluster_unavailable", str(error))


@router.get("/gpu")
async def gpus(claims: Caller, routes: RoutesDep, found_gpus: GpusDep) -> dict[str, Any]:
    cluster = cluster_of(found_gpus)
    try:
        # Fresh, not /health's cache: a caller who just served a model expects to see it.
        found = await cluster.nodes_and_reports(cached=False)
        pods = await cluster.pods()
    except ClusterUnreadable as error:
        raise unreadable(error) from error
    servers = {(target.namespace, target.name): target for target in routes.servers()}
    return build_inventory(found.nodes, pods, found.reports, servers, claims, time.time())


async def _view(cluster: GpuCluster, settings: GatewaySettings) -> dict[str, Any]:
    try:
        stored = await cluster.power_profile()
        found = await cluster.nodes_and_reports(cached=False)
    except ClusterUnreadable as error:
        raise unreadable(error) from error
    now = time.time()
    live = {report.node for report in found.reports if report.live(now)}
    gpu_nodes = [
        (node.get("metadata") or {}).get("name") or ""
        for node in found.nodes
        if is_gpu_node(node, live)
    ]
    return power_view(
        current_profile(stored),
        stored,
        configured_profiles(settings),
        found.reports,
        gpu_nodes,
        now,
    )


@router.get("/settings/power_profile")
async def get_power_profile(
    claims: Caller, settings: SettingsDep, found_gpus: GpusDep
) -> dict[str, Any]:
    return await _view(cluster_of(found_gpus), settings)


async def _named_profile(request: Request, query: str | None) -> str | None:
    """The profile named by ?profile= (seed 003) or a JSON body {"profile": …}."""
    raw = await request.body()
    if not raw.strip():
        return query
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise ApiError(422, "invalid_body", f"the body is not JSON: {error}") from error
    if not isinstance(body, dict) or not isinstance(body.get("profile"), str):
        raise ApiError(422, "invalid_body", 'the body must be {"profile": "<name>"}')
    named: str = body["profile"]
    if query is not None and query != named:
        raise ApiError(
            422, "conflicting_profiles", f"?profile={query} and the body's {named!r} differ"
        )
    return named


@router.post("/settings/power_profile")
async def set_power_profile(
    request: Request,
    claims: Admin,
    settings: SettingsDep,
    found_gpus: GpusDep,
    profile: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    cluster = cluster_of(found_gpus)
    name = await _named_profile(request, profile)
    if name not in PROFILE_NAMES:
        raise ApiError(422, "unknown_power_profile", unknown_profile_message(name))
    try:
        await cluster.store_power_profile(build_configmap_data(name, configured_profiles(settings)))
    except ClusterUnreadable as error:
        raise unreadable(error) from error
    return await _view(cluster, settings)
