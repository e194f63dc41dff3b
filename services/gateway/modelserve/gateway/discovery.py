"""Keeps the route table current by watching ModelServes: no API call per request.

One thread per watched scope (the whole cluster, or each of `watch_namespaces`) lists
the ModelServes, then watches from the list's resourceVersion; each change is handed to
the event loop, which alone touches the `RouteTable`. The thread lists again when the
API server says the version is too old (410 Gone), after any other error (with
backoff), and every `discovery_resync_seconds`, which also reads API keys again.

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
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelserve.common.modelserve import API_KEY_LABEL, holds_api_key
from modelserve.gateway.kubeservers import list_call
from modelserve.gateway.routing import RouteTable, Target, target_from_body

logger = logging.getLogger(__name__)
GONE = 410
# Server-side timeout of one watch request: the thread gets control back this often.
WATCH_SECONDS = 60
MAX_BACKOFF = 30.0
# How long one list (or a watch past its server-side timeout) may take.
REQUEST_SECONDS = 30


class Discovery:
    def __init__(
        self,
        api: k8s.ApiClient,
        table: RouteTable,
        *,
        namespaces: list[str] | None,
        resync_seconds: float,
    ) -> None:
        self._custom = k8s.CustomObjectsApi(api)
        self._core = k8s.CoreV1Api(api)
        self._table = table
        self._scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self._resync_seconds = resync_seconds
        self._stopped = threading.Event()
        self._watches: list[k8s_watch.Watch] = []
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unlisted = set(self._scopes)
        # (namespace, secret, key) -> value: a Secret read once serves every server naming it.
        self._secrets: dict[tuple[str, str, str], str | None] = {}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for scope in self._scopes:
            thread = threading.Thread(
                target=self._run, args=(scope,), name=f"discovery-{scope or 'cluster'}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    async def close(self) -> None:
        self._stopped.set()
        for watch in list(self._watches):
            watch.stop()
        deadline = time.monotonic() + 5
        for thread in self._threads:
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))

    # --- In the threads -------------------------------------------------------------

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._stopped.is_set():
            self._loop.call_soon_threadsafe(callback, *args)

    def _run(self, namespace: str | None) -> None:
        backoff = 1.0
        while not self._stopped.is_set():
            try:
                version = self._list(namespace)
                self._watch(namespace, version)
                backoff = 1.0
            except ApiException as error:
                if error.status == GONE:
                    continue  # our version is too old: list again now
                logger.warning("watching ModelServes failed (%s): %s", error.status, error.reason)
            except Exception:
                if self._stopped.is_set():
                    return  # `close` cut the watch's connection
                # A thread that died here would leave the routes frozen: log and go on.
                logger.exception("watching ModelServes failed")
            if self._stopped.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _list(self, namespace: str | None) -> str:
        call, args = list_call(self._custom, namespace)
        found = call(*args, _request_timeout=REQUEST_SECONDS)
        self._secrets.clear()  # a resync reads API keys again
        targets = [t for t in (self._target(body) for body in found["items"]) if t is not None]
        self._call(self._replace, targets, namespace)
        version: str = found["metadata"]["resourceVersion"]
        return version

    def _replace(self, targets: list[Target], namespace: str | None) -> None:
        self._table.replace(targets, namespace=namespace)
        self._unlisted.discard(namespace)
        if not self._unlisted:
            self._table.synced = True  # the table now holds every watched namespace

    def _watch(self, namespace: str | None, version: str) -> None:
        watch = k8s_watch.Watch()
        self._watches.append(watch)
        resync_at = time.monotonic() + self._resync_seconds
        call, args = list_call(self._custom, namespace)
        try:
            while not self._stopped.is_set() and time.monotonic() < resync_at:
                for event in watch.stream(
                    call,
                    *args,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                    _request_timeout=WATCH_SECONDS + REQUEST_SECONDS,
                ):
                    kind, body = event["type"], event["raw_object"]
                    version = body.get("metadata", {}).get("resourceVersion") or version
                    if kind in ("ADDED", "MODIFIED"):
                        target = self._target(body)
                        if target is not None:
                            self._call(self._table.upsert, target)
                    elif kind == "DELETED":
                        self._call(self._table.remove, body["metadata"]["uid"])
                    if self._stopped.is_set() or time.monotonic() >= resync_at:
                        break
        finally:
            watch.stop()
            self._watches.remove(watch)

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
        cache_key = (target.namespace, name, key)
        # Threads of other namespaces may clear the cache between a check and a read.
        with contextlib.suppress(KeyError):
            return self._secrets[cache_key]
        found = self._read_secret(target.namespace, name, key)
        self._secrets[cache_key] = found
        return found

    def _read_secret(self, namespace: str, name: str, key: str) -> str | None:
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
        encoded = (secret.data or {}).get(key)
        if encoded is None:
            logger.warning("the Secret %s/%s has no key %r", namespace, name, key)
            return None
        return base64.b64decode(encoded).decode().strip()
