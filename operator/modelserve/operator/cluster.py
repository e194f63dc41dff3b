"""Every call the operator makes to the Kubernetes API, behind one small async class.

Writes are server-side applies with one field manager: creating twice, or after a
restart in the middle of a reconcile, converges on the same objects, and fields
someone edited by hand are taken back.

The client is plain aiohttp with JSON dicts, on the same credentials kopf logs in with:
the handlers run on kopf's event loop without threads, and no typed models of the
`kubernetes` package are built (at a thousand ModelServes those were a third of the
operator's memory).
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf

from modelserve.common.modelserve import GROUP, PLURAL, VERSION
from modelserve.operator.builders import OPERATOR

# The plural (URL) name of each kind the operator reads or writes.
PLURALS = {
    "Secret": "secrets",
    "Service": "services",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Deployment": "deployments",
    "LeaderWorkerSet": "leaderworkersets",
    "IngressRoute": "ingressroutes",
    "HTTPRoute": "httproutes",
    "NetworkPolicy": "networkpolicies",
    "Middleware": "middlewares",
    "ModelServe": PLURAL,
    "Event": "events",
    "Lease": "leases",
    "Pod": "pods",
}
APPLY = "application/apply-patch+yaml"  # JSON is YAML
MERGE = "application/merge-patch+json"

logger = logging.getLogger(__name__)


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

    @property
    def over_quota(self) -> bool:
        """Refused by a ResourceQuota of the namespace: worth trying again (someone may
        raise the quota or free room), unlike any other 403."""
        return self.status == 403 and "exceeded quota" in str(self)


def login(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """In a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise kopf.PermanentError("no credentials: neither a service account nor a kubeconfig")
    return info


def path(api_version: str, kind: str, namespace: str, name: str = "") -> str:
    """The URL path of a namespaced object (or of its collection when `name` is empty)."""
    group = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    tail = f"/{name}" if name else ""
    return f"{group}/namespaces/{namespace}/{PLURALS[kind]}{tail}"


def _error(action: str, status: int, body: str) -> ClusterError:
    try:
        details = json.loads(body)
    except ValueError:
        details = {}
    message = details.get("message") or body[:500]
    causes = (details.get("details") or {}).get("causes") or []
    terminating = any(cause.get("reason") == "NamespaceTerminating" for cause in causes)
    missing_namespace = status == 404 and (details.get("details") or {}).get("kind") == "namespaces"
    return ClusterError(
        f"{action}: {status} {message}", status=status, gone=terminating or missing_namespace
    )


class Cluster:
    """One aiohttp session with at most `connections` connections to the API server.

    Created inside the event loop that uses it (aiohttp binds a session to its loop).
    """

    def __init__(self, settings: kopf.OperatorSettings, connections: int) -> None:
        self._settings = settings
        info = login(settings)
        self._auth = info.as_http_headers()
        self._session = aiohttp.ClientSession(
            base_url=info.server,
            connector=aiohttp.TCPConnector(limit=connections, ssl=info.as_ssl_context()),
            # No total: a request may wait its turn for a connection as long as it takes.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
        )

    async def close(self) -> None:
        await self._session.close()

    async def _call(
        self,
        action: str,
        method: str,
        url: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Any:
        """One request: `body` as JSON, the answer's JSON back. A 401 logs in again, once:
        service-account tokens are rotated on disk while the operator runs."""
        data = json.dumps(body) if body is not None else None
        for attempt in (1, 2):
            headers = {**self._auth, "Content-Type": content_type}
            try:
                async with self._session.request(
                    method, url, params=params, data=data, headers=headers
                ) as response:
                    status, text = response.status, await response.text()
            except (aiohttp.ClientError, TimeoutError) as error:
                raise ClusterError(f"{action}: {error or type(error).__name__}") from error
            if status == 401 and attempt == 1:
                self._auth = login(self._settings).as_http_headers()
                continue
            if status >= 400:
                raise _error(action, status, text)
            return json.loads(text) if text else None
        raise ClusterError(f"{action}: 401 Unauthorized, also after logging in again", status=401)

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or update `obj` to exactly what we want; returns the object as stored."""
        meta = obj["metadata"]
        stored: dict[str, Any] = await self._call(
            f"apply {obj['kind']} {meta['name']}",
            "PATCH",
            path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]),
            body=obj,
            content_type=APPLY,
            params={"fieldManager": OPERATOR, "force": "true"},
        )
        return stored

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        url = path(f"{GROUP}/{VERSION}", "ModelServe", namespace, name) + "/status"
        try:
            await self._call(
                f"update the status of {namespace}/{name}",
                "PATCH",
                url,
                body={"status": status},
                content_type=MERGE,
            )
        except ClusterError as error:
            if error.status != 404:
                raise  # a 404: deleted meanwhile, nothing left to report on

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Merge `annotations` into a pod's (a pod gone meanwhile is fine)."""
        try:
            await self._call(
                f"annotate pod {namespace}/{name}",
                "PATCH",
                path("v1", "Pod", namespace, name),
                body={"metadata": {"annotations": annotations}},
                content_type=MERGE,
            )
        except ClusterError as error:
            if error.status != 404:
                raise

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One Secret, read by name in its namespace (the operator lists or watches none);
        None if there is no such Secret."""
        return await self.read("v1", "Secret", namespace, name)

    async def read(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """One object, read by name; None if there is none."""
        try:
            found: dict[str, Any] = await self._call(
                f"read {PLURALS[kind]} {namespace}/{name}",
                "GET",
                path(api_version, kind, namespace, name),
            )
        except ClusterError as error:
            if error.status == 404:
                return None
            raise
        return found

    async def delete(self, obj: dict[str, Any]) -> None:
        """Delete the child `obj` (as stored: its uid is a precondition, so an object made
        meanwhile under the same name is kept). Gone already is fine."""
        meta = obj["metadata"]
        try:
            await self._call(
                f"delete {obj['kind']} {meta['name']}",
                "DELETE",
                path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "preconditions": {"uid": meta["uid"]},
                    "propagationPolicy": "Background",
                },
            )
        except ClusterError as error:
            if error.status not in (404, 409):  # 409: another object by now; not ours
                raise

    async def list_objects(self, api_version: str, kind: str, namespace: str, selector: str) -> Any:
        """A list (items and metadata.resourceVersion) of the objects matching `selector`."""
        return await self._call(
            f"list {PLURALS[kind]} in {namespace}",
            "GET",
            path(api_version, kind, namespace),
            params={"labelSelector": selector},
        )

    async def watch(
        self, api_version: str, kind: str, namespace: str, selector: str, resource_version: str
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events ({type, object}) after `resource_version`, until the server
        ends the watch (a few minutes); ClusterError if it fails or is refused (410: the
        version is too old, list again)."""
        params = {
            "labelSelector": selector,
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "240",
        }
        url = path(api_version, kind, namespace)
        try:
            async with self._session.get(
                url,
                params=params,
                headers=self._auth,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
            ) as response:
                if response.status >= 400:
                    if response.status == 401:
                        self._auth = login(self._settings).as_http_headers()
                    raise _error(f"watch {PLURALS[kind]}", response.status, await response.text())
                async for line in response.content:
                    if line.strip():
                        event: dict[str, Any] = json.loads(line)
                        yield event
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ClusterError(f"watch {PLURALS[kind]}: {error or type(error).__name__}") from error

    async def post_event(
        self, involved: dict[str, Any], type: str, reason: str, message: str
    ) -> None:
        """A Kubernetes Event about `involved` (apiVersion, kind and metadata of an object)."""
        meta = involved["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": OPERATOR},
            "reportingComponent": OPERATOR,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        url = path("v1", "Event", meta["namespace"])
        await self._call(f"post an event on {meta['name']}", "POST", url, body=event)
