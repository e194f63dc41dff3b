"""The Kubernetes reads of the operations API, through the gateway's one ApiClient.

The `kubernetes` client is synchronous: each call runs in a thread. Answers are read as
plain JSON (`_preload_content=False`), as the pure builders take them. A refusal or an
unreachable API server becomes `ClusterReadError`, whose message says which.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelserve.gateway.operations.facts import MANAGED_BY_LABEL, OPERATOR

# Pods that may still hold resources on their node.
NOT_TERMINATED = "status.phase!=Succeeded,status.phase!=Failed"


def _message(error: ApiException) -> str:
    """The message of the Status object in an API error's body (else its reason)."""
    try:
        status = json.loads(error.body or "{}")
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return str(error.reason or error)


# Each read of the operations API: connect and read, seconds (a kubelet that does not
# answer a log read must not hold one of the gateway's threads for long).
READ_SECONDS = (5.0, 20.0)


class ClusterReadError(Exception):
    """The API server refused a read, or could not be reached; `status` is its HTTP
    status (None when unreachable)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


async def _read(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`call`'s raw answer body (JSON decoded unless `raw`), within READ_SECONDS."""
    raw = kwargs.pop("raw", False)

    def run() -> Any:
        response = call(*args, _preload_content=False, _request_timeout=READ_SECONDS, **kwargs)
        data = response.data
        return data.decode("utf-8", errors="replace") if raw else json.loads(data)

    try:
        return await asyncio.to_thread(run)
    except ValueError as error:  # not JSON: no answer of the API server's
        raise ClusterReadError(f"the cluster's answer to {what} is not JSON", None) from error
    except ApiException as error:
        raise ClusterReadError(
            f"the cluster refused to {what} ({error.status}): {_message(error)}", error.status
        ) from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise ClusterReadError(f"the cluster cannot be reached to {what}: {error}", None) from error


class ClusterReads:
    """Reads of nodes, pods, Deployments, logs and the server version."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self._core = k8s.CoreV1Api(api)
        self._apps = k8s.AppsV1Api(api)
        self._version = k8s.VersionApi(api)

    async def server_version(self) -> str:
        """The API server's gitVersion (its /version)."""
        found = await _read("read its version", self._version.get_code)
        return str(found.get("gitVersion") or "")

    async def nodes(self) -> list[dict[str, Any]]:
        found = await _read("list nodes", self._core.list_node)
        return list(found["items"])

    async def bound_pods(self) -> list[dict[str, Any]]:
        """Every pod of the cluster that may hold resources (not Succeeded or Failed)."""
        found = await _read(
            "list pods in every namespace",
            self._core.list_pod_for_all_namespaces,
            field_selector=NOT_TERMINATED,
        )
        return list(found["items"])

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        found = await _read(
            f"list pods in {namespace}",
            self._core.list_namespaced_pod,
            namespace,
            label_selector=selector,
        )
        return list(found["items"])

    async def server_deployments(self, namespaces: list[str] | None) -> list[dict[str, Any]]:
        """The operator's model-server Deployments in `namespaces` (None: everywhere)."""
        selector = f"{MANAGED_BY_LABEL}={OPERATOR}"
        if namespaces is None:
            found = await _read(
                "list Deployments in every namespace",
                self._apps.list_deployment_for_all_namespaces,
                label_selector=selector,
            )
            return list(found["items"])
        lists = await asyncio.gather(
            *(
                _read(
                    f"list Deployments in {namespace}",
                    self._apps.list_namespaced_deployment,
                    namespace,
                    label_selector=selector,
                )
                for namespace in namespaces
            )
        )
        return [item for found in lists for item in found["items"]]

    async def log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        lines: int,
        since_seconds: int | None,
    ) -> str:
        """The last `lines` lines of the container's log (within `since_seconds`)."""
        options: dict[str, Any] = {"container": container, "tail_lines": lines}
        if since_seconds is not None:
            options["since_seconds"] = since_seconds
        text: str = await _read(
            f"read the log of {namespace}/{pod}/{container}",
            self._core.read_namespaced_pod_log,
            pod,
            namespace,
            raw=True,
            **options,
        )
        return text
