"""The cluster's GPUs as GET /gpu shows them: pure functions over the nodes, the pods and
the node agents' reports (`modelserve.common.gpu_reports`), as the API server lists them.

- A node is a GPU node when it has `nvidia.com/gpu` capacity (the device plugin's), the
  `nvidia.com/gpu.product` label (GPU feature discovery's), or a live agent report.
- A node's allocated GPUs are the `nvidia.com/gpu` requests of the pods bound to it that
  have not ended (a container's limit where it has no request; per pod, the larger of
  the containers' sum and the largest init container, as the scheduler counts).
- Each allocation names the server (ModelServe) of its pod when the caller may use that
  server (`Target.may_use`: their own, their teams', the platform's; admins any); the
  rest is one anonymous entry per node, counted but not named.
- Live figures come only from a node agent's live report; without one a node says so in
  `live_source` and `live` is null. Nothing is estimated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from modelserve.common.gpu_reports import FIGURES, GpuReport
from modelserve.common.modelserve import GPU_PRODUCT_LABEL, GPU_RESOURCE, SERVER_LABEL
from modelserve.common.timestamps import rfc3339
from modelserve.common.tokens import Claims
from modelserve.gateway.operations.quantities import TERMINATED_PHASES, pod_requests
from modelserve.gateway.routing import Target

NO_AGENT = "none: no node agent reports for this node"

Obj = Mapping[str, Any]


def _count(value: object) -> int:
    """A GPU quantity ("2"); 0 for anything else (GPUs are whole)."""
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0


def pod_gpus(pod: Obj) -> int:
    """The GPUs a pod asks for, as the scheduler counts them (`/system`'s rule)."""
    return int(pod_requests(pod)[GPU_RESOURCE])


@dataclasses.dataclass(frozen=True)
class Allocation:
    node: str
    namespace: str
    pod: str
    server: str | None  # the pod's ModelServe (its label), if any
    gpus: int


def allocations(pods: Iterable[Obj]) -> list[Allocation]:
    """The GPU requests of the pods bound to a node that have not ended."""
    found = []
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in TERMINATED_PHASES:
            continue
        gpus = pod_gpus(pod)
        if gpus:
            server = (meta.get("labels") or {}).get(SERVER_LABEL)
            found.append(
                Allocation(node, meta.get("namespace") or "", meta.get("name") or "", server, gpus)
            )
    return found


def _visible(
    allocation: Allocation, claims: Claims, servers: Mapping[tuple[str, str], Target]
) -> dict[str, Any] | None:
    """What `claims` may see of an allocation; None: it is counted anonymously."""
    target = servers.get((allocation.namespace, allocation.server)) if allocation.server else None
    if claims.is_admin or (target is not None and target.may_use(claims)):
        return {
            "namespace": allocation.namespace,
            "server": allocation.server,
            "server_id": target.server_id if target is not None else None,
            "pod": allocation.pod,
            "gpus": allocation.gpus,
        }
    return None


def _live(report: GpuReport | None, now: float) -> tuple[list[dict[str, Any]] | None, str]:
    if report is None:
        return None, NO_AGENT
    if not report.live(now):
        expired = rfc3339(report.renewed + report.duration)
        return None, f"none: the node agent's last report expired at {expired}"
    if report.error is not None:
        return None, f"none: the node agent could not read the GPUs: {report.error}"
    return [gpu.to_wire() for gpu in report.gpus], (
        f"node agent (nvidia-smi), reported at {rfc3339(report.renewed)}"
    )


def is_gpu_node(node: Obj, reported: Collection[str]) -> bool:
    meta, status = node.get("metadata") or {}, node.get("status") or {}
    return bool(
        _count((status.get("capacity") or {}).get(GPU_RESOURCE, 0))
        or GPU_PRODUCT_LABEL in (meta.get("labels") or {})
        or meta.get("name") in reported
    )


def build_inventory(
    nodes: Sequence[Obj],
    pods: Iterable[Obj],
    reports: Iterable[GpuReport],
    servers: Mapping[tuple[str, str], Target],
    claims: Claims,
    now: float,
) -> dict[str, Any]:
    """GET /gpu's answer."""
    latest: dict[str, GpuReport] = {}
    for report in reports:
        known = latest.get(report.node)
        if known is None or report.renewed > known.renewed:
            latest[report.node] = report
    live_nodes = {name for name, report in latest.items() if report.live(now)}
    by_node: dict[str, list[Allocation]] = {}
    for allocation in allocations(pods):
        by_node.setdefault(allocation.node, []).append(allocation)

    entries = []
    for node in sorted(nodes, key=lambda n: (n.get("metadata") or {}).get("name") or ""):
        if not is_gpu_node(node, live_nodes):
            continue
        meta, status = node.get("metadata") or {}, node.get("status") or {}
        name = meta.get("name") or ""
        shown, anonymous = [], 0
        for allocation in by_node.get(name, []):
            seen = _visible(allocation, claims, servers)
            if seen is None:
                anonymous += allocation.gpus
            else:
                shown.append(seen)
        if anonymous:
            shown.append(
                {
                    "namespace": None,
                    "server": None,
                    "server_id": None,
                    "pod": None,
                    "gpus": anonymous,
                }
            )
        allocatable = _count((status.get("allocatable") or {}).get(GPU_RESOURCE, 0))
        allocated = sum(a.gpus for a in by_node.get(name, []))
        live, source = _live(latest.get(name), now)
        entries.append(
            {
                "node": name,
                "gpu_type": (meta.get("labels") or {}).get(GPU_PRODUCT_LABEL),
                "capacity": _count((status.get("capacity") or {}).get(GPU_RESOURCE, 0)),
                "allocatable": allocatable,
                "allocated": allocated,
                "free": max(0, allocatable - allocated),
                "allocations": shown,
                "live": live,
                "live_source": source,
            }
        )
    return _with_totals(entries)


def _with_totals(entries: list[dict[str, Any]]) -> dict[str, Any]:
    types: dict[str | None, dict[str, Any]] = {}
    for entry in entries:
        kind = types.setdefault(
            entry["gpu_type"],
            {
                "gpu_type": entry["gpu_type"],
                "nodes": [],
                "capacity": 0,
                "allocatable": 0,
                "allocated": 0,
            },
        )
        kind["nodes"].append(entry["node"])
        for key in ("capacity", "allocatable", "allocated"):
            kind[key] += entry[key]
    gpus = [{"node": entry["node"], **gpu} for entry in entries for gpu in entry["live"] or []]
    answer: dict[str, Any] = {
        "totals": {
            "nodes": len(entries),
            **{
                key: sum(e[key] for e in entries)
                for key in ("capacity", "allocatable", "allocated")
            },
            "gpus_with_live_figures": len(gpus),
        },
        "types": sorted(types.values(), key=lambda kind: str(kind["gpu_type"])),
        "nodes": entries,
        "gpus": gpus,
    }
    # Seed 003's single-GPU fields, at the top: only where the cluster has exactly one GPU
    # and a node agent reports it (never filled in otherwise).
    if answer["totals"]["capacity"] <= 1 and len(gpus) == 1:
        answer.update({field: gpus[0][field] for field in FIGURES})
    return answer


def gpu_summary(nodes: Sequence[Obj], reports: Iterable[GpuReport], now: float) -> dict[str, Any]:
    """The `gpu` object of GET /health (seed 003's fields): from the nodes' GPU capacity
    and product labels; memory only from live node agent reports covering every GPU."""
    live = {report.node: report for report in reports if report.live(now)}
    gpu_nodes = [node for node in nodes if is_gpu_node(node, live)]
    count = 0
    names: set[str] = set()
    for node in gpu_nodes:
        meta, status = node.get("metadata") or {}, node.get("status") or {}
        count += _count((status.get("capacity") or {}).get(GPU_RESOURCE, 0))
        product = (meta.get("labels") or {}).get(GPU_PRODUCT_LABEL)
        if product:
            names.add(product)
    used: float | None = None
    total: float | None = None
    figures = [
        gpu
        for node in gpu_nodes
        if (report := live.get((node.get("metadata") or {}).get("name") or "")) is not None
        and report.error is None
        for gpu in report.gpus
    ]
    every_node = all((n.get("metadata") or {}).get("name") in live for n in gpu_nodes)
    if gpu_nodes and every_node and figures and len(figures) >= count:
        memory_used = [gpu.memory_used_mb for gpu in figures]
        memory_total = [gpu.memory_total_mb for gpu in figures]
        if all(value is not None for value in memory_used + memory_total):
            used = round(sum(v or 0.0 for v in memory_used) / 1024, 2)
            total = round(sum(v or 0.0 for v in memory_total) / 1024, 2)
    ordered = sorted(names)
    return {
        "available": count > 0,
        "device_count": count,
        "device_name": ordered[0] if len(ordered) == 1 else None,
        "device_names": ordered,
        "memory_allocated_gb": used,
        "memory_reserved_gb": None,
        "memory_total_gb": total,
        "live_gpus": len(figures),
    }
