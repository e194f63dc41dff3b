"""The platform's own pods as GET /system shows them to admins (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modelserve.gateway.operations.logs import COMPONENT_LABEL


def pod_summary(pod: Mapping[str, Any]) -> dict[str, Any]:
    """Name, component, phase, readiness and restarts of one pod."""
    metadata, status = pod["metadata"], pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    conditions = status.get("conditions") or []
    return {
        "name": metadata["name"],
        "namespace": metadata["namespace"],
        "component": (metadata.get("labels") or {}).get(COMPONENT_LABEL),
        "node": (pod.get("spec") or {}).get("nodeName"),
        "phase": status.get("phase"),
        "ready": any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        "restarts": sum(int(c.get("restartCount") or 0) for c in containers),
        "started": status.get("startTime"),
    }


def platform_pods(pods: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each pod, by component then name."""
    found = [pod_summary(pod) for pod in pods]
    return sorted(found, key=lambda p: (p["component"] or "", p["namespace"], p["name"]))
