"""Every child of a ModelServe, in the order they are applied: its cache claim, the
NetworkPolicy of a model over several nodes (where the operator makes them), which
workload (a Deployment, or a LeaderWorkerSet for a model over several nodes), its Service
and its route. Pure, as the builders it puts together."""

from __future__ import annotations

from modelserve.common.modelserve import ModelServe, Runtime
from modelserve.operator.builders import (
    Obj,
    build_cache_claim,
    build_deployment,
    build_route,
    build_service,
    child_metadata,
    route_prefix,
    store_secret_name,
)
from modelserve.operator.multinode import (
    build_group_policy,
    build_leader_service,
    build_leader_worker_set,
    is_multinode,
)
from modelserve.operator.routes import build_httproute
from modelserve.operator.settings import OperatorSettings


def build_workload(ms: ModelServe, settings: OperatorSettings, replicas: int | None = None) -> Obj:
    """What runs the server's pods: `replicas` (None: spec.replicas) pods of a Deployment,
    or `replicas` groups of spec.resources.nodes pods of a LeaderWorkerSet."""
    if is_multinode(ms):
        return build_leader_worker_set(ms, settings, replicas)
    return build_deployment(ms, settings, replicas)


def build_children(
    ms: ModelServe, settings: OperatorSettings, replicas: int | None = None
) -> list[Obj]:
    """What the cluster runs for `ms` besides its store Secret (which needs the store, see
    `builders.build_store_secret`), in the order it should be applied; `replicas` as for
    `build_workload`."""
    if ms.spec.runtime is Runtime.EXTERNAL:
        return []
    children = [build_cache_claim(ms)] if ms.spec.model.cache.enabled else []
    multinode = is_multinode(ms)
    if multinode and settings.group_network_policy:  # fenced before its pods exist
        children.append(build_group_policy(ms))
    service = build_leader_service if multinode else build_service
    children += [build_workload(ms, settings, replicas), service(ms, settings)]
    if settings.route_kind == "httproute":
        children.append(build_httproute(child_metadata(ms, ms.name), route_prefix(ms), settings))
    else:
        children += build_route(ms, settings)
    return children


def wanted_children(ms: ModelServe, settings: OperatorSettings) -> set[tuple[str, str]]:
    """(kind, name) of every child `ms` should have now, the store Secret included; any
    other child it owns is stale."""
    wanted = {(c["kind"], c["metadata"]["name"]) for c in build_children(ms, settings)}
    if ms.spec.runtime is not Runtime.EXTERNAL:
        wanted.add(("Secret", store_secret_name(ms)))
    return wanted
