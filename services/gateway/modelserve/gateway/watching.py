"""List, then watch: the loop that keeps the gateway's copy of some Kubernetes objects.

One thread per kind of object and scope (the whole cluster, or one namespace) lists the
objects, then watches from the list's resourceVersion and hands each change to its
`Watched` kind. It lists again when the API server says the version is too old (410
Gone), after any other error (with backoff), and every `resync_seconds`, since a watch
only sends changes and a missed one would otherwise stay missed.

The `kubernetes` client is synchronous, hence threads; the kinds hand what they learn
over to the event loop, which alone touches the route table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

logger = logging.getLogger(__name__)
GONE = 410
# Server-side timeout of one watch request: the thread gets control back this often.
WATCH_SECONDS = 60
# Retries of a failed list or watch back off from 1 s, doubling, to this: a change made
# right after the API server comes back is routed within about this long (with 30 s, a
# restart test saw 22.8 s and 33.7 s), at the cost of one list per watch this often while
# it is away.
MAX_BACKOFF = 5.0
# How long one list (or a watch past its server-side timeout) may take.
REQUEST_SECONDS = 30

Scope = str | None  # a namespace, or None for the whole cluster


class Watched(Protocol):
    """A kind of object that a `Watches` keeps, and what becomes of it."""

    what: str  # for logs and thread names: "ModelServes"
    selector: str  # a label selector ("" for every object)

    def call(self, namespace: Scope) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """The client's list call for `namespace` (a watch is a list with `watch=True`),
        and its positional arguments."""
        ...

    def listed(self, namespace: Scope, items: list[dict[str, Any]]) -> None:
        """Every object of `namespace` is now exactly `items` (in the thread)."""
        ...

    def changed(self, event: str, body: dict[str, Any]) -> None:
        """An ADDED, MODIFIED or DELETED object (in the thread)."""
        ...


class Watches:
    """The list-then-watch threads of `kinds` in each of `scopes`, from `start` to `close`."""

    def __init__(
        self, kinds: Sequence[Watched], scopes: Sequence[Scope], *, resync_seconds: float
    ) -> None:
        self._pairs = [(kind, scope) for kind in kinds for scope in scopes]
        self._resync_seconds = resync_seconds
        self._stopped = threading.Event()
        self._watches: list[k8s_watch.Watch] = []
        self._threads: list[threading.Thread] = []
        # Why the last list or watch of a kind and scope failed, until a list succeeds
        # again (written by the threads, read by readiness).
        # The lists and watches that failed and have not listed since (their errors are
        # logged where they happen).
        self._failing: set[tuple[str, Scope]] = set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def problem(self) -> str | None:
        """What keeps the copy from following the cluster now, or None: a thread that
        ended, or a list or watch that failed and has not listed again since."""
        ended = [thread.name for thread in self._threads if not thread.is_alive()]
        if ended and not self.stopped:
            return "a watch thread ended"
        return "watching failed" if self._failing else None

    def start(self) -> None:
        for kind, scope in self._pairs:
            name = f"watch-{kind.what.lower()}-{scope or 'cluster'}"
            thread = threading.Thread(target=self._run, args=(kind, scope), name=name, daemon=True)
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

    def _run(self, kind: Watched, namespace: Scope) -> None:
        backoff = 1.0
        while not self._stopped.is_set():
            try:
                version = self._list(kind, namespace)
                self._failing.discard((kind.what, namespace))
                self._watch(kind, namespace, version)
                backoff = 1.0
            except ApiException as error:
                if error.status == GONE:
                    continue  # our version is too old: list again now
                logger.warning("watching %s failed (%s): %s", kind.what, error.status, error.reason)
                self._failing.add((kind.what, namespace))
            except Exception:
                if self._stopped.is_set():
                    return  # `close` cut the watch's connection
                # A thread that died here would leave the routes frozen: log and go on.
                logger.exception("watching %s failed", kind.what)
                self._failing.add((kind.what, namespace))
            if self._stopped.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _list(self, kind: Watched, namespace: Scope) -> str:
        call, args = kind.call(namespace)
        # Raw JSON: every kind is read from the same dicts that watch events carry.
        response = call(
            *args,
            label_selector=kind.selector,
            _request_timeout=REQUEST_SECONDS,
            _preload_content=False,
        )
        try:
            found = json.loads(response.data)
        finally:
            response.release_conn()
        kind.listed(namespace, found.get("items") or [])
        version: str = found["metadata"]["resourceVersion"]
        return version

    def _watch(self, kind: Watched, namespace: Scope, version: str) -> None:
        # Events as plain dicts, the same for every kind (and ERROR events still raised).
        watch = k8s_watch.Watch(return_type="object")
        self._watches.append(watch)
        resync_at = time.monotonic() + self._resync_seconds
        call, args = kind.call(namespace)
        try:
            while not self._stopped.is_set() and time.monotonic() < resync_at:
                for event in watch.stream(
                    call,
                    *args,
                    label_selector=kind.selector,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                    _request_timeout=WATCH_SECONDS + REQUEST_SECONDS,
                ):
                    event_type, body = event["type"], event["raw_object"]
                    version = body.get("metadata", {}).get("resourceVersion") or version
                    if event_type in ("ADDED", "MODIFIED", "DELETED"):
                        kind.changed(event_type, body)
                    if self._stopped.is_set() or time.monotonic() >= resync_at:
                        break
        finally:
            watch.stop()
            self._watches.remove(watch)
