"""What tests of the operator do to the real API server: apply a ModelServe (from the
docs' examples), read objects, wait for a phase."""

from __future__ import annotations

import json
from typing import Any

import yaml

from modelserve.testbed.cache import repo_root
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.polling import wait_for

EXAMPLES = repo_root() / "docs" / "examples"


def manifest(example: str, **changes: Any) -> dict[str, Any]:
    """An example of docs/examples/ with `changes` (`spec__model__uri=...`: a path of keys)."""
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / example).read_text())
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    return body


def apply(kube: KubeCluster, namespace: str, body: dict[str, Any]) -> str:
    kube.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(body))
    name: str = body["metadata"]["name"]
    return name


def get(kube: KubeCluster, namespace: str, *what: str) -> Any:
    return kube.get_json("-n", namespace, *what)


def wait_phase(
    kube: KubeCluster, namespace: str, name: str, phase: str, timeout: float = 90
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status: dict[str, Any] = get(kube, namespace, "ms", name).get("status") or {}
        return status if status.get("phase") == phase else None

    try:
        return wait_for(reached, timeout=timeout, what=f"{name} to be {phase}")
    except TimeoutError as error:
        status = get(kube, namespace, "ms", name).get("status")
        children = kube.kubectl("get", "-n", namespace, "deployments,pods", "-o", "wide")
        raise AssertionError(
            f"{name} never became {phase}; status: {json.dumps(status)}\n{children}"
        ) from error
