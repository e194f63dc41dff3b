"""Keeps the route table current by watching the cluster: no API call per request.

Two kinds of objects are watched (list, then watch; see `watching`) in each watched
scope: ModelServes, which become the table's targets, and the EndpointSlices of the
operator's Services, which say where a `vllm` or `llamacpp` server answers and which
of its pods are ready. Each change is handed to the event loop, which alone touches the
`RouteTable`. The table counts as synced once every kind was listed in every scope.

An `external` server's API key lives in a Secret of its namespace
(`spec.external.apiKeySecretRef`); the thread reads it when the server appears or
changes and at each resync, so the proxy sends `Authorization: Bearer <key>` without a
lookup.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelserve.common.modelserve import (
    API_KEY_HOSTS_ANNOTATION,
    API_KEY_LABEL,
    holds_api_key,
    key_may_go_to,
)
from modelserve.gateway.endpoints import SLICE_SELECTOR, ServiceSlice, slice_from_body
from modelserve.gateway.kubeservers import list_call
from modelserve.gateway.routing import RouteTable, Target, target_from_body
from modelserve.gateway.watching import REQUEST_SECONDS, Scope, Watched, Watches

logger = logging.getLogger(__name__)


class Discovery:
    def __init__(
        self,
        api: k8s.ApiClient,
        table: RouteTable,
        *,
        namespaces: list[str] | None,
        resync_seconds: float,
    ) -> None:
        self._table = table
        self._loop: asyncio.AbstractEventLoop | None = None
        scopes: list[Scope] = list(namespaces) if namespaces else [None]
        kinds: list[Watched] = [
            ModelServes(api, table, self._hand_over, self._listed),
            EndpointSlices(api, table, self._hand_over, self._listed),
        ]
        self._unlisted = {(kind.what, scope) for kind in kinds for scope in scopes}
        self._watches = Watches(kinds, scopes, resync_seconds=resync_seconds)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._watches.start()

    async def close(self) -> None:
        await self._watches.close()

    def problem(self) -> str | None:
        """Why the route table does not follow the cluster now (readiness), or None. In
        general words: /ready answers anyone, and which namespaces are watched and what
        the API server refused are for the log (where each failure is written)."""
        if self._unlisted:
            return "not listed yet"
        return self._watches.problem()

    def _hand_over(self, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback` on the event loop (called from the threads)."""
        if self._loop is not None and not self._watches.stopped:
            self._loop.call_soon_threadsafe(callback, *args)

    def _listed(self, what: str, namespace: Scope) -> None:
        """On the loop, after a list of `what` in `namespace` reached the table."""
        self._unlisted.discard((what, namespace))
        if not self._unlisted:
            self._table.synced = True  # the table now holds every watched namespace


# Runs a callback on the event loop (called from the threads).
HandOver = Callable[..., None]
# Called on the loop once a list of a kind in a scope reached the table.
Listed = Callable[[str, Scope], None]


class ModelServes:
    """ModelServes become targets; an external server's API key is read with it."""

    what = "ModelServes"
    selector = ""

    def __init__(
        self, api: k8s.ApiClient, table: RouteTable, hand_over: HandOver, listed: Listed
    ) -> None:
        self._custom = k8s.CustomObjectsApi(api)
        self._core = k8s.CoreV1Api(api)
        self._table = table
        self._hand_over = hand_over
        self._done = listed
        # (namespace, secret, key, url) -> value: a Secret read once serves every server naming
        # it with the same URL (whether the key may go there depends on the URL).
        self._secrets: dict[tuple[str, str, str, str], str | None] = {}

    def call(self, namespace: Scope) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return list_call(self._custom, namespace)

    def listed(self, namespace: Scope, items: list[dict[str, Any]]) -> None:
        self._secrets.clear()  # a resync reads API keys again
        targets = [t for t in (self._target(body) for body in items) if t is not None]
        self._hand_over(self._replace, targets, namespace)

    def _replace(self, targets: list[Target], namespace: Scope) -> None:
        self._table.replace(targets, namespace=namespace)
        self._done(self.what, namespace)

    def changed(self, event: str, body: dict[str, Any]) -> None:
        if event == "DELETED":
            self._hand_over(self._table.remove, body["metadata"]["uid"])
            return
        target = self._target(body)
        if target is not None:
            self._hand_over(self._table.upsert, target)

    def _target(self, body: dict[str, Any]) -> Target | None:
        try:
            target = target_from_body(body)
        except (ValidationError, ValueError, KeyError) as error:
            meta = body.get("metadata", {})
            logger.warning(
                "ModelServe %s/%s is left out of the routes: %s",
                meta.get("namespace"),
                meta.get("name"),
                error,
            )
            return None
        if target.api_key_secret is None:
            return target
        return dataclasses.replace(target, api_key=self._api_key(target))

    def _api_key(self, target: Target) -> str | None:
        assert target.api_key_secret is not None
        name, key = target.api_key_secret
        cache_key = (target.namespace, name, key, target.endpoint)
        # Threads of other namespaces may clear the cache between a check and a read.
        with contextlib.suppress(KeyError):
            return self._secrets[cache_key]
        found = self._read_secret(target.namespace, name, key, target.endpoint)
        self._secrets[cache_key] = found
        return found

    def _read_secret(self, namespace: str, name: str, key: str, url: str) -> str | None:
        try:
            secret = self._core.read_namespaced_secret(
                name, namespace, _request_timeout=REQUEST_SECONDS
            )
        except ApiException as error:
            logger.warning(
                "the API key Secret %s/%s cannot be read (%s): requests go without a key",
                namespace,
                name,
                error.status,
            )
            return None
        if not holds_api_key(secret.metadata.labels if secret.metadata else None):
            logger.warning(
                "the Secret %s/%s is not labelled %s=true: requests go without a key",
                namespace,
                name,
                API_KEY_LABEL,
            )
            return None
        if not key_may_go_to(secret.metadata.annotations if secret.metadata else None, url):
            logger.warning(
                "the Secret %s/%s does not name the host of %s in %s: requests go without a key",
                namespace,
                name,
                url,
                API_KEY_HOSTS_ANNOTATION,
            )
            return None
        encoded = (secret.data or {}).get(key)
        if encoded is None:
            logger.warning("the Secret %s/%s has no key %r", namespace, name, key)
            return None
        return base64.b64decode(encoded).decode().strip()


class EndpointSlices:
    """The EndpointSlices of the operator's Services: where each server's pods answer."""

    what = "EndpointSlices"
    selector = SLICE_SELECTOR

    def __init__(
        self, api: k8s.ApiClient, table: RouteTable, hand_over: HandOver, listed: Listed
    ) -> None:
        self._api = k8s.DiscoveryV1Api(api)
        self._endpoints = table.endpoints
        self._hand_over = hand_over
        self._done = listed

    def call(self, namespace: Scope) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if namespace is None:
            return self._api.list_endpoint_slice_for_all_namespaces, ()
        return self._api.list_namespaced_endpoint_slice, (namespace,)

    def listed(self, namespace: Scope, items: list[dict[str, Any]]) -> None:
        slices = [s for s in (self._slice(body) for body in items) if s is not None]
        self._hand_over(self._replace, slices, namespace)

    def _replace(self, slices: list[ServiceSlice], namespace: Scope) -> None:
        self._endpoints.replace(slices, namespace=namespace)
        self._done(self.what, namespace)

    def changed(self, event: str, body: dict[str, Any]) -> None:
        found = self._slice(body)
        if found is None:
            return
        if event == "DELETED":
            self._hand_over(self._endpoints.remove, found.namespace, found.name)
        else:
            self._hand_over(self._endpoints.upsert, found)

    def _slice(self, body: dict[str, Any]) -> ServiceSlice | None:
        try:
            return slice_from_body(body)
        except (KeyError, TypeError, AttributeError) as error:
            # The API server validated it: a slice this fails on is one we misread.
            logger.warning("an EndpointSlice is left out of the routes: %r", error)
            return None
