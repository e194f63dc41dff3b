"""What GET /logs/{component} reads and how it answers (pure).

A component is one of the platform's (the chart's `app.kubernetes.io/component` labels
of pods in the platform namespace), or a server's id (a ModelServe's UID, as in
/status/{id}), whose pods the operator labels `llm.modelserve.io/modelserve=<name>`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from modelserve.common.errors import ApiError
from modelserve.common.modelserve import FETCH_CONTAINER, SERVER_CONTAINER, SERVER_LABEL

# The components of charts/modelserve/templates/*.yaml that run pods.
PLATFORM_COMPONENTS = (
    "contract",
    "download",
    "gateway",
    "jobs",
    "minio",
    "nodeagent",
    "operator",
    "postgresql",
)
COMPONENT_LABEL = "app.kubernetes.io/component"
# The operator's label of a ModelServe's pods (operator/modelserve/operator/builders.py).
SERVER_POD_LABEL = SERVER_LABEL
# A model server's container, and the init container that fetches its model first.
SERVER_CONTAINERS = (SERVER_CONTAINER, FETCH_CONTAINER)
DEFAULT_LINES = 100
MAX_LINES = 5000
# `since_seconds` at most: a year (the API server reads it as an int64).
MAX_SINCE_SECONDS = 366 * 24 * 3600


def is_server_id(component: str) -> bool:
    """Whether `component` is written as a server id is (a UUID, lower case)."""
    try:
        return str(uuid.UUID(component)) == component
    except ValueError:
        return False


def unknown_component(component: str) -> ApiError:
    return ApiError(
        404,
        "unknown_component",
        f"no component {component!r}: the platform's are {', '.join(PLATFORM_COMPONENTS)} "
        "(admins only), and each server is one by its server_id (GET /status)",
    )


def check_container(container: str | None, *, server: bool) -> str | None:
    """The container asked for: for a server one of SERVER_CONTAINERS (default `server`);
    for a platform component any (default: every container of its pods)."""
    if server:
        chosen = container or SERVER_CONTAINER
        if chosen not in SERVER_CONTAINERS:
            raise ApiError(
                422,
                "invalid_container",
                f"a server's containers are {', '.join(SERVER_CONTAINERS)}, not {chosen!r}",
            )
        return chosen
    return container


def _statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def has_started(pod: Mapping[str, Any], container: str) -> bool:
    """Whether `container` of `pod` ran at some point (so that it has a log)."""
    for found in _statuses(pod):
        if found.get("name") != container:
            continue
        state = found.get("state") or {}
        return bool(
            "running" in state
            or "terminated" in state
            or found.get("restartCount")
            or (found.get("lastState") or {}).get("terminated")
        )
    return False


def containers_of(pod: Mapping[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    return [
        c["name"] for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    ]


def log_targets(
    pods: Iterable[Mapping[str, Any]], container: str | None
) -> list[tuple[str, str, str]]:
    """(namespace, pod, container) of every container with a log: `container` of each pod,
    or (None) each of its containers; pods being deleted included, oldest pod first."""
    found = []
    ordered = sorted(
        pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"])
    )
    for pod in ordered:
        metadata = pod["metadata"]
        names = [container] if container is not None else containers_of(pod)
        for name in names:
            if has_started(pod, name):
                found.append((metadata["namespace"], metadata["name"], name))
    return found


def no_running_pod(
    component: str, container: str | None, namespaces: list[str], *, platform: bool
) -> ApiError:
    what = f"container {container!r} of any " if container else "any "
    message = f"no {what}pod of {component} has run in {', '.join(namespaces)}: no log to read"
    if platform:
        message += (
            "; where the platform's services run as processes and not as pods (as on the "
            "test bed), their logs are not in the cluster"
        )
    return ApiError(404, "no_running_pod", message)


def log_answer(
    component: str,
    kind: str,
    *,
    lines: int,
    since_seconds: int | None,
    read: Iterable[tuple[tuple[str, str, str], str]],
) -> dict[str, Any]:
    """The JSON answer: each ((namespace, pod, container), log text) read."""
    return {
        "component": component,
        "kind": kind,
        "lines": lines,
        "since_seconds": since_seconds,
        "pods": [
            {"namespace": ns, "pod": pod, "container": name, "lines": text.splitlines()}
            for (ns, pod, name), text in read
        ],
    }


def as_text(answer: Mapping[str, Any]) -> str:
    """The JSON answer as text: each container's lines under a `==> pod/container <==`
    header, as `tail` shows several files."""
    parts = []
    for found in answer["pods"]:
        header = f"==> {found['namespace']}/{found['pod']}/{found['container']} <=="
        parts.append("\n".join([header, *found["lines"]]))
    return "\n\n".join(parts) + "\n"


def wants_text(accept: str | None) -> bool:
    """Text/plain when the Accept header names it before (or without) JSON."""
    if not accept:
        return False
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    text = kinds.index("text/plain") if "text/plain" in kinds else None
    json = kinds.index("application/json") if "application/json" in kinds else None
    return text is not None and (json is None or text < json)
