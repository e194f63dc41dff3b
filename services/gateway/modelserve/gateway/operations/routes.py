"""GET /info, /version, /config, /system and /logs/{component}: the operations API.

Who may read what (docs/operations-api.md): /info, /version and the nodes and host of
/system take any signed-in caller; /config, the platform's pods and process in /system
and the platform's logs are for admins; a server's logs for its owner and admins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse

from modelserve.common.errors import ApiError
from modelserve.common.settings import split
from modelserve.common.tokens import Claims
from modelserve.gateway.auth import Admin, Caller
from modelserve.gateway.deps import KubeDep, RoutesDep, ServersDep, SettingsDep
from modelserve.gateway.kubeservers import ServerStore, served_namespaces
from modelserve.gateway.operations import logs
from modelserve.gateway.operations.cluster import ClusterReadError, ClusterReads
from modelserve.gateway.operations.facts import (
    build_info,
    build_version,
    runtime_images,
    server_of,
)
from modelserve.gateway.operations.nodes import build_nodes
from modelserve.gateway.operations.platform_pods import platform_pods
from modelserve.gateway.operations.procfs import read_host, read_process
from modelserve.gateway.operations.redaction import redacted_settings
from modelserve.gateway.settings import GatewaySettings

router = APIRouter(tags=["operations"])
T = TypeVar("T")
NO_CLUSTER = "this gateway is not connected to a cluster"


async def _attempt(read: Awaitable[T], field: str, unavailable: dict[str, str]) -> T | None:
    """`read`'s answer, or None with the reason in `unavailable[field]`."""
    try:
        return await read
    except ClusterReadError as error:
        unavailable[field] = str(error)
        return None


@router.get("/info")
async def info(_: Caller, settings: SettingsDep, kube: KubeDep) -> dict[str, Any]:
    """The configuration that matters to a caller: auth, limits, hold queue, scaling."""
    return build_info(settings, cluster=kube is not None)


@router.get("/version")
async def version(
    claims: Caller, settings: SettingsDep, kube: KubeDep, routes: RoutesDep
) -> dict[str, Any]:
    """API, platform, Python and Kubernetes versions, and the images of the model servers
    the caller may use (admins: all): a tenant's `spec.image` is theirs."""
    unavailable: dict[str, str] = {}
    if kube is None:
        unavailable = {"kubernetes_version": NO_CLUSTER, "runtime_images": NO_CLUSTER}
        return build_version(kubernetes_version=None, images=None, unavailable=unavailable)
    reads = ClusterReads(kube)
    served = served_namespaces(settings.watch_namespaces, settings.namespace)
    # The platform's own servers too, as discovery watches them.
    namespaces = None if served is None else sorted({*served, *split(settings.platform_namespaces)})
    found, deployments = await asyncio.gather(
        _attempt(reads.server_version(), "kubernetes_version", unavailable),
        _attempt(reads.server_deployments(namespaces), "runtime_images", unavailable),
    )
    if deployments is not None and not (claims.is_admin or claims.is_service):
        usable = {(t.namespace, t.name) for t in routes.servers() if t.may_use(claims)}
        deployments = [d for d in deployments if server_of(d) in usable]
    images = runtime_images(deployments) if deployments is not None else None
    return build_version(kubernetes_version=found, images=images, unavailable=unavailable)


@router.get("/config")
async def config(_: Admin, settings: SettingsDep) -> dict[str, Any]:
    """The gateway's effective settings, credentials replaced by "***" (admins)."""
    shown, redacted = redacted_settings(settings)
    return {"service": "gateway", "settings": shown, "redacted": sorted(redacted)}


@router.get("/system")
async def system(claims: Caller, settings: SettingsDep, kube: KubeDep) -> dict[str, Any]:
    """The nodes (capacity, allocatable, requests) and this replica's host; for admins also
    this gateway process and the platform's pods."""
    unavailable: dict[str, str] = {}
    nodes: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] | None = None
    namespaces = split(settings.platform_namespaces)
    if kube is None:
        unavailable["nodes"] = NO_CLUSTER
    else:
        reads = ClusterReads(kube)
        listed, bound = await asyncio.gather(
            _attempt(reads.nodes(), "nodes", unavailable),
            _attempt(reads.bound_pods(), "requests", unavailable),
        )
        nodes = build_nodes(listed or [], bound)
        if claims.is_admin:
            selector = logs.COMPONENT_LABEL
            found = await asyncio.gather(
                *(
                    _attempt(reads.pods(ns, selector), "platform_pods", unavailable)
                    for ns in namespaces
                )
            )
            pods = platform_pods(pod for part in found for pod in part or [])
    try:
        host: dict[str, Any] | None = read_host()
    except OSError as error:
        host, unavailable["gateway_host"] = None, f"cannot read /proc: {error}"
    platform = None
    if claims.is_admin:
        try:
            process: dict[str, Any] | None = read_process()
        except OSError as error:
            process, unavailable["gateway_process"] = None, f"cannot read /proc: {error}"
        platform = {"namespaces": namespaces, "gateway_process": process, "pods": pods}
    return {
        "nodes": nodes,
        "gateway_host": host,
        "platform": platform,
        "unavailable": unavailable,
    }


async def _pods_of(
    component: str,
    claims: Claims,
    settings: GatewaySettings,
    servers: ServerStore,
    reads: ClusterReads,
) -> tuple[str, list[str], list[dict[str, Any]]]:
    """(kind, namespaces, pods) of `component`, if the caller may read its logs."""
    if component in logs.PLATFORM_COMPONENTS:
        if not claims.is_admin:
            raise ApiError(403, "admin_only", "the platform's logs are for admins")
        namespaces = split(settings.platform_namespaces)
        selector = f"{logs.COMPONENT_LABEL}={component}"
        found = await asyncio.gather(*(reads.pods(ns, selector) for ns in namespaces))
        return "platform", namespaces, [pod for part in found for pod in part]
    if not logs.is_server_id(component):
        raise logs.unknown_component(component)
    item = await servers.find(component, None if claims.is_admin else claims.sub)
    if item is None:
        if claims.is_admin:
            raise ApiError(404, "server_not_found", f"no server {component}")
        # The same answer whether or not someone else has such a server.
        raise ApiError(
            403,
            "not_server_owner",
            f"only a server's owner or an admin may read its logs; {component} is no server "
            "of yours",
        )
    metadata = item["metadata"]
    selector = f"{logs.SERVER_POD_LABEL}={metadata['name']}"
    return "server", [metadata["namespace"]], await reads.pods(metadata["namespace"], selector)


async def _log_of(
    reads: ClusterReads, namespace: str, pod: str, container: str, **options: Any
) -> str | None:
    """The container's log; None when the pod went away (404) or the container cannot
    give one any more (400) since the pods were listed."""
    try:
        return await reads.log(namespace, pod, container, **options)
    except ClusterReadError as error:
        if error.status in (400, 404):
            return None
        raise


@router.get("/logs/{component}", response_model=None)
async def component_logs(
    component: str,
    request: Request,
    claims: Caller,
    settings: SettingsDep,
    servers: ServersDep,
    kube: KubeDep,
    lines: Annotated[int, Query(ge=1, le=logs.MAX_LINES)] = logs.DEFAULT_LINES,
    since_seconds: Annotated[int | None, Query(ge=1, le=logs.MAX_SINCE_SECONDS)] = None,
    container: Annotated[str | None, Query(min_length=1, max_length=63)] = None,
) -> dict[str, Any] | Response:
    """The last `lines` lines of each container of the component's pods (JSON, or text
    with `Accept: text/plain`)."""
    if kube is None:  # ServersDep answers 503 first; kept for the type checker
        raise ApiError(503, "no_cluster", NO_CLUSTER)
    reads = ClusterReads(kube)
    try:
        kind, namespaces, pods = await _pods_of(component, claims, settings, servers, reads)
        chosen = logs.check_container(container, server=kind == "server")
        targets = logs.log_targets(pods, chosen)
        if not targets:
            raise logs.no_running_pod(component, chosen, namespaces, platform=kind == "platform")
        texts = await asyncio.gather(
            *(
                _log_of(reads, ns, pod, name, lines=lines, since_seconds=since_seconds)
                for ns, pod, name in targets
            )
        )
    except ClusterReadError as error:
        raise ApiError(503, "cluster_unavailable", str(error)) from error
    read = [(target, text) for target, text in zip(targets, texts, strict=True) if text is not None]
    if not read:
        raise logs.no_running_pod(component, chosen, namespaces, platform=kind == "platform")
    answer = logs.log_answer(component, kind, lines=lines, since_seconds=since_seconds, read=read)
    if logs.wants_text(request.headers.get("accept")):
        return PlainTextResponse(logs.as_text(answer))
    return answer
