"""Servers in the cluster: ModelServes created, listed and deleted through the Kubernetes API.

The `kubernetes` client is synchronous: every call runs in a thread. Its `ApiException`s
become `ApiError`s here, so that routes never see one. A refusal by the contract
service's admission webhook keeps its reason code and message.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelserve.common.errors import ApiError
from modelserve.common.modelserve import GROUP, OWNER_LABEL, PLURAL, VERSION
from modelserve.common.rollouts import MODEL_VERSION_ANNOTATION, ROLLOUT_ANNOTATION
from modelserve.gateway.server_events import event_selectors
from modelserve.gateway.servers import is_label_value

T = TypeVar("T")
# Objects as the API server returns them (JSON); named here, where `ServerStore.list`
# would shadow `list` in the class.
Objects = list[dict[str, Any]]
# How the API server words a webhook's refusal; the contract service's message starts with
# its reason code in brackets ("[max_replicas_exceeded] 3 replicas is over …").
_WEBHOOK_DENIAL = re.compile(r'admission webhook "[^"]*" denied the request: (.*)', re.DOTALL)
_REASON = re.compile(r"^\[([a-z_]+)\]\s*(.*)", re.DOTALL)


def _status_of(error: ApiException) -> tuple[str, str]:
    """The message and details kind of the Status object in an API error's body."""
    try:
        status = json.loads(error.body or "{}")
    except ValueError:
        return str(error.reason or error), ""
    if not isinstance(status, dict):
        return str(status), ""
    details = status.get("details") or {}
    return str(status.get("message") or error.reason), str(details.get("kind") or "")


def api_error(error: ApiException, *, action: str) -> ApiError:
    """What the gateway answers for an API server's refusal of `action`."""
    message, kind = _status_of(error)
    if error.status == 403:
        denial = _WEBHOOK_DENIAL.search(message)
        if denial is None:
            return ApiError(403, "cluster_forbidden", f"the cluster refused to {action}: {message}")
        reason = _REASON.match(denial.group(1).strip())
        if reason is None:
            return ApiError(403, "admission_denied", denial.group(1).strip())
        return ApiError(403, reason.group(1), reason.group(2).strip())
    if error.status == 400:
        return ApiError(400, "bad_request", message)
    if error.status == 404:
        if kind == "namespaces":
            return ApiError(404, "namespace_not_found", message)
        return ApiError(404, "server_not_found", message)
    if error.status == 409:
        return ApiError(409, "conflict", message)
    if error.status == 422:
        return ApiError(422, "invalid_server", message)
    return ApiError(503, "cluster_unavailable", f"the cluster could not {action}: {message}")


# How long one list of a server's events may take (the API server's answer included).
EVENTS_REQUEST_SECONDS = 10


async def _call(action: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return await asyncio.to_thread(call, *args, **kwargs)
    except ApiException as error:
        raise api_error(error, action=action) from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise ApiError(
            503, "cluster_unavailable", f"the cluster cannot be reached: {error}"
        ) from error


def list_call(
    objects: k8s.CustomObjectsApi, namespace: str | None
) -> tuple[Callable[..., Any], tuple[str, ...]]:
    """The call that lists (or watches) the ModelServes of `namespace` (None: of every
    namespace), and its positional arguments."""
    if namespace is None:
        return objects.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
    return objects.list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURAL)


def served_namespaces(watched: str, default: str) -> list[str] | None:
    """The namespaces whose servers the gateway manages: None for all (`watched` is "*"),
    else those listed and the default one."""
    names = [name.strip() for name in watched.split(",") if name.strip()]
    if "*" in names:
        return None
    return sorted({*names, default})


class ServerStore:
    """ModelServes, in every namespace or in those of `namespaces` (None: all)."""

    def __init__(self, api: k8s.ApiClient, namespaces: list[str] | None) -> None:
        self._objects = k8s.CustomObjectsApi(api)
        self._core = k8s.CoreV1Api(api)
        self.namespaces = namespaces

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The created object (with its uid); 409 `conflict` when the name is taken."""
        namespace = manifest["metadata"]["namespace"]
        created: dict[str, Any] = await _call(
            "create the server",
            self._objects.create_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            manifest,
        )
        return created

    async def list(self, owner: str | None) -> list[dict[str, Any]]:
        """Every ModelServe, or only those labelled for `owner`."""
        if owner is not None and not is_label_value(owner):
            return []  # no label can name them: the gateway made no server for them
        selector = f"{OWNER_LABEL}={owner}" if owner is not None else ""
        scopes = [None] if self.namespaces is None else self.namespaces
        calls = [list_call(self._objects, namespace) for namespace in scopes]
        lists = await asyncio.gather(
            *(_call("list servers", call, *args, label_selector=selector) for call, args in calls)
        )
        return [item for found in lists for item in found["items"]]

    async def find(self, server_id: str, owner: str | None) -> dict[str, Any] | None:
        """The ModelServe whose uid is `server_id`, among those of `owner` (None: anyone's).

        Custom resources cannot be selected by uid: this lists and looks."""
        return next(
            (item for item in await self.list(owner) if item["metadata"]["uid"] == server_id),
            None,
        )

    async def delete(self, body: dict[str, Any]) -> None:
        """Delete that very object (not another one since created under its name); its
        children follow by garbage collection. Already gone counts as deleted."""
        metadata = body["metadata"]
        options = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=metadata["uid"]))
        try:
            await _call(
                "stop the server",
                self._objects.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                metadata["namespace"],
                PLURAL,
                metadata["name"],
                body=options,
            )
        except ApiError as error:
            # 404: gone already; 409: the uid precondition failed, so ours is gone too.
            if error.status_code not in (404, 409):
                raise

    async def set_scaling(self, body: dict[str, Any], scaling: dict[str, Any]) -> dict[str, Any]:
        """Merge `scaling` (camelCase fields) into the ModelServe's spec.scaling."""
        metadata = body["metadata"]
        patched: dict[str, Any] = await _call(
            "configure the server",
            self._objects.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            metadata["namespace"],
            PLURAL,
            metadata["name"],
            {"spec": {"scaling": scaling}},
        )
        return patched

    async def set_model(
        self, body: dict[str, Any], *, uri: str, model_id: str, rollout_id: str
    ) -> dict[str, Any]:
        """Point the ModelServe at another version of its model (the operator rolls it
        out): spec.model.uri and modelId, and the annotations that name the version and
        the change (`modelserve.common.rollouts`). Only if it is still the object listed
        (its uid): a server deleted and made again under its name is not changed."""
        metadata = body["metadata"]
        patch = {
            "metadata": {
                "uid": metadata["uid"],
                "annotations": {MODEL_VERSION_ANNOTATION: model_id, ROLLOUT_ANNOTATION: rollout_id},
            },
            "spec": {"model": {"uri": uri, "modelId": model_id}},
        }
        patched: dict[str, Any] = await _call(
            "set the server's model",
            self._objects.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            metadata["namespace"],
            PLURAL,
            metadata["name"],
            patch,
        )
        return patched

    async def scale(self, body: dict[str, Any], replicas: int) -> int:
        """Set the ModelServe's replicas through its scale subresource (as `kubectl scale`
        does; the contract's webhook decides it as a `scale` for the server's owner); the
        replicas the Scale then holds. A Scale takes no uid precondition: the name is the
        one just listed, and names end in a random suffix."""
        metadata = body["metadata"]
        patch = {"spec": {"replicas": replicas}}
        answer: dict[str, Any] = await _call(
            "scale the server",
            self._objects.patch_namespaced_custom_object_scale,
            GROUP,
            VERSION,
            metadata["namespace"],
            PLURAL,
            metadata["name"],
            patch,
        )
        held = (answer.get("spec") or {}).get("replicas")
        return held if isinstance(held, int) else replicas

    async def names_in(self, namespace: str) -> tuple[str, ...]:
        """The names of the ModelServes of `namespace`, everyone's."""
        call, args = list_call(self._objects, namespace)
        found = await _call("list servers", call, *args)
        return tuple(item["metadata"]["name"] for item in found["items"])

    async def events(self, body: dict[str, Any]) -> Objects:
        """The Events of the ModelServe's namespace that may be about it or its children
        (one list per kind; `server_events` keeps the server's own)."""
        metadata = body["metadata"]

        def read(selector: str) -> Objects:
            # The raw JSON (the typed client's models are not what the builders read), read
            # in the thread too: the body comes off the socket with `.data`.
            answer = self._core.list_namespaced_event(
                metadata["namespace"],
                field_selector=selector,
                _preload_content=False,
                _request_timeout=EVENTS_REQUEST_SECONDS,
            )
            items: Objects = json.loads(answer.data).get("items") or []
            return items

        async def listed(selector: str) -> Objects:
            return await _call("list the server's events", read, selector)

        selectors = event_selectors(metadata["uid"], metadata["name"])
        lists = await asyncio.gather(*(listed(selector) for selector in selectors))
        return [event for found in lists for event in found]
