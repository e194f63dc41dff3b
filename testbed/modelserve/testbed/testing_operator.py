"""What tests of the operator do to the real API server: apply a ModelServe (from the
docs' examples), read objects, wait for a phase; and what a pod's fetch step does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import yaml

from modelserve.operator.fetch import fetch, parse_files
from modelserve.operator.settings import OperatorSettings
from modelserve.operator.store import ModelStore
from modelserve.testbed.cache import repo_root
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
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


def fetch_as_a_pod(store: MinioServer, uri: str, model_dir: Path) -> list[Path]:
    """What a model server's init step does with the Secret the operator writes for `uri`:
    the objects' recorded digests and presigned URLs, then plain GETs, each file checked.
    The files written."""
    settings = OperatorSettings.model_validate(
        {
            "model_store_endpoint": store.endpoint,
            "model_store_access_key": store.access_key,
            "model_store_secret_key": store.secret_key,
        }
    )
    model_store = ModelStore(settings)
    files = model_store.presign(uri, model_store.resolve(uri))
    with httpx.Client(follow_redirects=False) as http:
        return fetch(http, uri, parse_files(files, model_dir), model_dir)
