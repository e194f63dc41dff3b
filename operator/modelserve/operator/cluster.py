"""Every call the operator makes to the Kubernetes API, behind one small class.

Writes are server-side applies with one field manager: creating twice, or after a
restart in the middle of a reconcile, converges on the same objects, and fields
someone edited by hand are taken back.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from modelserve.operator.builders import OPERATOR
from modelserve.operator.spec import GROUP, PLURAL, VERSION


class ClusterError(RuntimeError):
    """An API call failed; `retryable` says whether trying again later can help."""

    def __init__(self, message: str, *, status: int | None = None, gone: bool = False) -> None:
        super().__init__(message)
        self.status = status
        # The object's namespace is gone or going: there is nothing left to reconcile.
        self.gone = gone

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status >= 500 or self.status in (409, 429)


def load_api_client(connections: int) -> k8s.ApiClient:
    """In a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config.

    `connections` should match the threads that share the client: a smaller pool makes
    each extra thread open (and throw away) a new TLS connection per call.
    """
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = connections
    return k8s.ApiClient(configuration)


def _error(action: str, error: ApiException) -> ClusterError:
    try:
        causes = json.loads(error.body or "{}").get("details", {}).get("causes", [])
    except (ValueError, AttributeError):
        causes = []
    terminating = any(cause.get("reason") == "NamespaceTerminating" for cause in causes)
    return ClusterError(
        f"{action}: {error.status} {error.reason}: {error.body}",
        status=error.status,
        gone=terminating or (error.status == 404 and "namespaces" in str(error.body)),
    )


class Cluster:
    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self._dynamic = DynamicClient(api)
        self._custom = k8s.CustomObjectsApi(api)
        self._core = k8s.CoreV1Api(api)

    def close(self) -> None:
        self.api.close()

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or update `obj` to exactly what we want; returns the object as stored."""
        meta = obj["metadata"]
        try:
            resource = self._dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            stored = resource.server_side_apply(
                body=obj,
                name=meta["name"],
                namespace=meta.get("namespace"),
                field_manager=OPERATOR,
                force_conflicts=True,
            )
        except ApiException as error:
            raise _error(f"apply {obj['kind']} {meta['name']}", error) from error
        result: dict[str, Any] = stored.to_dict()
        return result

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": status},
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            if error.status == 404:
                return  # deleted meanwhile: nothing left to report on
            raise _error(f"update the status of {namespace}/{name}", error) from error

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _error(f"read secret {namespace}/{name}", error) from error
        encoded = (secret.data or {}).get(key)
        return base64.b64decode(encoded).decode() if encoded is not None else None
