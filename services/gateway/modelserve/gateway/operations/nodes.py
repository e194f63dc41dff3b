"""The cluster's nodes as GET /system shows them (pure): capacity, allocatable and the sum
of the requests of the pods bound to each, in cores, bytes and GPUs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from modelserve.common.modelserve import GPU_PRODUCT_LABEL
from modelserve.gateway.operations.quantities import (
    RESOURCES,
    amounts,
    as_units,
    requests_per_node,
)


def _ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_summary(
    node: Mapping[str, Any], requested: Mapping[str, Decimal] | None, pods: int | None
) -> dict[str, Any]:
    """One node; `requested` and `pods` are None where the pods could not be read."""
    metadata, status = node["metadata"], node.get("status") or {}
    labels = metadata.get("labels") or {}
    return {
        "name": metadata["name"],
        "ready": _ready(node),
        "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
        "gpu_product": labels.get(GPU_PRODUCT_LABEL),
        "capacity": as_units(amounts(status.get("capacity"))),
        "allocatable": as_units(amounts(status.get("allocatable"))),
        "requests": None if requested is None else as_units(requested),
        "pods": pods,
    }


def build_nodes(
    nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """Every node by name, with the requests of `pods` (None: requests unknown)."""
    per_node = requests_per_node(pods) if pods is not None else None
    zero = dict.fromkeys(RESOURCES, Decimal(0))
    found = []
    for node in sorted(nodes, key=lambda n: str(n["metadata"]["name"])):
        if per_node is None:
            found.append(node_summary(node, None, None))
        else:
            requested, count = per_node.get(node["metadata"]["name"], (zero, 0))
            found.append(node_summary(node, requested, count))
    return found
