"""Writing a `coordination.k8s.io/v1` Lease that one process owns and renews: the gateway
replicas' load reports (`load_reports`) and the node agents' GPU reports (`gpu_reports`).

The `kubernetes` client is synchronous: call these from a thread.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

NOT_FOUND, CONFLICT = 404, 409


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
