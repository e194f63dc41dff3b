"""A `coordination.k8s.io/v1` Lease that one process owns and renews as its report: the
gateway replicas' load reports (`load_reports`) and the node agents' GPU reports
(`gpu_reports`). A report is a label (to list them), an annotation (its JSON payload), the
holder and the times of the Lease (whether it is live).

The `kubernetes` client is synchronous: call `put_lease` and `delete_lease` from a thread.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelserve.common.timestamps import epoch_seconds, rfc3339

NOT_FOUND, CONFLICT = 404, 409


@dataclasses.dataclass(frozen=True)
class ReportLease:
    """What a report Lease holds, as read back."""

    name: str
    holder: str
    renewed: float  # renewTime, seconds since the epoch (0: none)
    duration: float  # leaseDurationSeconds
    payload: dict[str, Any]


def build_report_lease(
    *,
    name: str,
    namespace: str,
    label: str,
    annotation: str,
    holder: str,
    payload: Mapping[str, Any],
    duration: float,
    renewed: float,
) -> dict[str, Any]:
    """The Lease that carries a report (for a create or a patch)."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {label: "true"},
            "annotations": {annotation: json.dumps(payload, separators=(",", ":"))},
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": max(1, round(duration)),
            "renewTime": rfc3339(renewed, micro=True),
        },
    }


def read_report_lease(body: Mapping[str, Any], label: str, annotation: str) -> ReportLease | None:
    """The report a Lease carries; None for a Lease that is not one, or whose payload is
    not a JSON object."""
    meta = body.get("metadata") or {}
    if (meta.get("labels") or {}).get(label) != "true":
        return None
    spec = body.get("spec") or {}
    try:
        payload = json.loads((meta.get("annotations") or {}).get(annotation) or "{}")
        duration = float(spec.get("leaseDurationSeconds") or 0)
    except (ValueError, TypeError):
        return None
    if not isinstance(payload, dict):
        return None
    return ReportLease(
        name=str(meta.get("name") or ""),
        holder=str(spec.get("holderIdentity") or ""),
        renewed=epoch_seconds(spec.get("renewTime")) or 0.0,
        duration=duration,
        payload=payload,
    )


def put_lease(
    leases: k8s.CoordinationV1Api,
    name: str,
    namespace: str,
    body: dict[str, Any],
    *,
    timeout: float,
) -> None:
    """Patch the Lease; create it when it is not there (yet, or any more)."""
    try:
        leases.patch_namespaced_lease(name, namespace, body, _request_timeout=timeout)
        return
    except ApiException as error:
        if error.status != NOT_FOUND:
            raise
    try:
        leases.create_namespaced_lease(namespace, body, _request_timeout=timeout)
    except ApiException as error:
        if error.status != CONFLICT:
            raise
        # Made between our patch and create (another write of ours): patch it.
        leases.patch_namespaced_lease(name, namespace, body, _request_timeout=timeout)


def delete_lease(
    leases: k8s.CoordinationV1Api, name: str, namespace: str, *, timeout: float
) -> None:
    """Delete the Lease; one already gone is fine."""
    try:
        leases.delete_namespaced_lease(name, namespace, _request_timeout=timeout)
    except ApiException as error:
        if error.status != NOT_FOUND:
            raise
