"""The server ledger kept in step with the cluster: what ModelServes really exist.

Admission writes nothing; the ledger is written from the cluster. A list of every
ModelServe makes the ledger match (servers deleted, servers the gateway's decision
recorded but never created after a grace time), then a watch from that list's
resourceVersion applies each change as it happens: a ModelServe added or changed is
recorded with the owner and team of its labels, one deleted (or being deleted) is taken
out. The watch is renewed with a new list every `interval` seconds, and after any error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from pydantic import ValidationError

from modelserve.common.modelserve import GROUP, OWNER_LABEL, PLURAL, TEAM_LABEL, VERSION, ModelServe
from modelserve.contract.policy import replica_gpus
from modelserve.contract.store import Store
from modelserve.contract.tables import Server

logger = logging.getLogger(__name__)


def load_api_client() -> k8s.ApiClient:
    """In a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)
    return k8s.ApiClient(configuration)


def server_of(body: dict[str, Any]) -> Server | None:
    """A ModelServe as a ledger row, its owner and team from its labels; None for one
    being deleted (it no longer counts) or one that is not valid."""
    try:
        ms = ModelServe.from_body(body)
    except (ValidationError, KeyError, TypeError):
        return None
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    labels = (body.get("metadata") or {}).get("labels") or {}
    return Server(
        namespace=ms.namespace,
        name=ms.name,
        owner=labels.get(OWNER_LABEL, ""),
        team=labels.get(TEAM_LABEL, ""),
        replicas=ms.spec.most_replicas,
        # Every GPU of a replica: each pod of a group over several nodes holds its own.
        gpus=replica_gpus(ms.spec.resources.gpus, ms.spec.group_size),
        model=ms.served_name,
        runtime=ms.spec.runtime.value,
    )


def _in_thread(work: Callable[[], Any]) -> asyncio.Future[Any]:
    """`work` in a daemon thread: a watch blocked on the socket never holds up the exit."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as error:  # noqa: BLE001 - handed on to the awaiting task
            future.set_exception(error)

    threading.Thread(target=run, name="contract-inventory", daemon=True).start()
    return asyncio.wrap_future(future)


class Inventory:
    def __init__(self, store: Store, api: k8s.ApiClient, interval: float, grace: float) -> None:
        self._store = store
        self._api = k8s.CustomObjectsApi(api)
        self._interval = interval
        self._grace = grace

    def _list(self) -> tuple[list[Server], str]:
        listing = self._api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        servers = (server_of(item) for item in listing.get("items", []))
        version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
        return [server for server in servers if server is not None], version

    async def sync(self) -> tuple[tuple[int, int], str]:
        """The ledger made to match a list of the cluster: ((added, dropped), its version)."""
        running, version = await asyncio.to_thread(self._list)
        return await self._store.sync_servers(running, self._grace), version

    async def read(self, namespace: str, name: str) -> Server | None:
        """One ModelServe as the API server has it now (None: not there)."""

        def get() -> dict[str, Any] | None:
            try:
                found: dict[str, Any] = self._api.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name
                )
            except k8s.ApiException as error:
                if error.status == 404:
                    return None
                raise
            return found

        body = await asyncio.to_thread(get)
        return server_of(body) if body is not None else None

    async def apply(self, kind: str, body: dict[str, Any]) -> None:
        """One watch event on the ledger."""
        metadata = body.get("metadata") or {}
        server = server_of(body) if kind != "DELETED" else None
        if server is not None:
            await self._store.upsert_server(server)
        elif metadata.get("namespace") and metadata.get("name"):
            await self._store.remove_server(metadata["namespace"], metadata["name"])

    def _watch(self, version: str, loop: asyncio.AbstractEventLoop) -> None:
        stream = k8s_watch.Watch().stream(
            self._api.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            resource_version=version,
            timeout_seconds=max(1, int(self._interval)),
            # A connection that went silent ends the watch too, rather than hanging it.
            _request_timeout=(10, self._interval + 30),
        )
        for event in stream:
            kind = event.get("type")
            body = event.get("object") or {}
            if kind == "ERROR":  # 410 Gone and the like: a new list is needed
                raise RuntimeError(f"the watch of ModelServes ended: {body}")
            if kind in ("ADDED", "MODIFIED", "DELETED") and isinstance(body, dict):
                asyncio.run_coroutine_threadsafe(self.apply(kind, body), loop).result()

    async def run(self) -> None:
        """List, then watch until the watch ends, forever; errors end the task (its
        supervisor logs them and starts it again)."""
        while True:
            (added, dropped), version = await self.sync()
            if added or dropped:
                logger.info("server ledger: %d added, %d dropped", added, dropped)
            await _in_thread(functools.partial(self._watch, version, asyncio.get_running_loop()))
