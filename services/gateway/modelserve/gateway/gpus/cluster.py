"""Reading the cluster for GET /gpu, GET /health and the power profile routes: nodes, pods
with GPUs, the node agents' report Leases and the power profile ConfigMap.

The `kubernetes` client is synchronous: each read runs in a thread, and its raw JSON is
kept (no typed models: the pure functions of `inventory` read plain mappings). /health
is probed often, so what it reads (nodes and reports) is cached for
GATEWAY_GPU_CACHE_SECONDS and read again by one read at a time, while probes answer what
was read last (see `TtlCache`): one listing per period, whatever the probe rate, and no
probe held up by a slow API server. An API server that refuses or does not answer is a
`ClusterUnreadable`.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modelserve.common.gpu_reports import GPU_REPORT_LABEL, GpuReport, gpu_report_from_lease
from modelserve.common.power_profiles import CONFIGMAP_NAME

T = TypeVar("T")
REQUEST_SECONDS = 10
# The longest a /health probe waits for the first read (later ones answer what is cached).
HEALTH_WAIT_SECONDS = 2.0
NOT_FOUND, CONFLICT = 404, 409
# Pods that hold resources: not ended (the scheduler stops counting those).
RUNNING_PODS = "status.phase!=Succeeded,status.phase!=Failed"


class ClusterUnreadable(Exception):
    """The API server refused a read or did not answer (the message says which)."""


@dataclasses.dataclass(frozen=True)
class NodesAndReports:
    nodes: list[dict[str, Any]]
    reports: list[GpuReport]


class TtlCache(Generic[T]):
    """One value, read again once it is `seconds` old, by one read at a time. A reader
    who finds it stale gets the stale value at once while the read runs on (a probe
    never waits for a slow API server when there is an answer); only the very first
    reader waits, at most `wait` seconds. A failed read is kept as the value, the same
    time: the API server is not asked again by every probe."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._value: tuple[float, T | ClusterUnreadable] | None = None
        self._reading: asyncio.Task[None] | None = None

    async def get(self, load: Callable[[], Awaitable[T]], *, wait: float) -> T:
        if self._value is not None and self._clock() - self._value[0] < self._seconds:
            return self._unwrap(self._value[1])
        if self._reading is None:
            # Shared by the requests that come meanwhile: not in the context (the request
            # id of its logs) of the one that happened to start it.
            self._reading = asyncio.create_task(self._read(load), context=contextvars.Context())
        if self._value is not None:
            return self._unwrap(self._value[1])
        try:
            await asyncio.wait_for(asyncio.shield(self._reading), wait)
        except TimeoutError as error:
            message = f"the API server did not answer within {wait:g} s"
            raise ClusterUnreadable(message) from error
        return self._unwrap(self._latest())

    async def _read(self, load: Callable[[], Awaitable[T]]) -> None:
        try:
            value: T | ClusterUnreadable = await load()
        except ClusterUnreadable as error:
            value = error
        finally:
            self._reading = None
        self._value = (self._clock(), value)

    def _latest(self) -> T | ClusterUnreadable:
        """What the read that just ended left."""
        if self._value is None:
            raise ClusterUnreadable("the GPU read ended without a value")
        return self._value[1]

    @staticmethod
    def _unwrap(value: T | ClusterUnreadable) -> T:
        if isinstance(value, ClusterUnreadable):
            raise value
        return value


def _why(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"


class GpuCluster:
    def __init__(self, api: k8s.ApiClient, namespace: str, cache_seconds: float) -> None:
        self._core = k8s.CoreV1Api(api)
        self._leases = k8s.CoordinationV1Api(api)
        self.namespace = namespace
        self._summary: TtlCache[NodesAndReports] = TtlCache(cache_seconds)
        # The listing of pods GET /gpu is making, shared by every caller meanwhile: fresh
        # figures for each, and never more than one cluster-wide listing at a time.
        self._listing_pods: asyncio.Future[list[dict[str, Any]]] | None = None

    async def _call(self, what: str, read: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(read)
        except (ApiException, HTTPError, OSError, ValueError) as error:
            # ValueError: an answer that is not the JSON asked for.
            message = f"the cluster did not let the gateway {what}: {_why(error)}"
            raise ClusterUnreadable(message) from error

    @staticmethod
    def _json(response: Any) -> Any:
        return json.loads(response.data)

    # --- Reads ---------------------------------------------------------------------------

    async def nodes_and_reports(self, *, cached: bool = True) -> NodesAndReports:
        async def load() -> NodesAndReports:
            nodes = await self._call("list nodes", self._list_nodes)
            reports = await self._call("list GPU reports", self._list_reports)
            return NodesAndReports(nodes, reports)

        if not cached:
            return await load()
        return await self._summary.get(load, wait=HEALTH_WAIT_SECONDS)

    async def pods(self) -> list[dict[str, Any]]:
        if self._listing_pods is None:
            listing = asyncio.get_running_loop().create_task(
                self._call("list pods", self._list_pods), context=contextvars.Context()
            )
            listing.add_done_callback(self._listed)
            self._listing_pods = listing
        return await asyncio.shield(self._listing_pods)

    def _listed(self, listing: asyncio.Future[list[dict[str, Any]]]) -> None:
        self._listing_pods = None
        if not listing.cancelled():
            listing.exception()  # retrieved here: every waiter may have left

    async def power_profile(self) -> dict[str, str] | None:
        """The power profile ConfigMap's data; None where there is none."""
        return await self._call("read the power profile", self._read_profile)

    async def store_power_profile(self, data: dict[str, str]) -> None:
        await self._call("store the power profile", lambda: self._write_profile(data))

    # --- In a thread ---------------------------------------------------------------------

    def _list_nodes(self) -> list[dict[str, Any]]:
        found = self._core.list_node(_preload_content=False, _request_timeout=REQUEST_SECONDS)
        items: list[dict[str, Any]] = self._json(found).get("items") or []
        return items

    def _list_pods(self) -> list[dict[str, Any]]:
        found = self._core.list_pod_for_all_namespaces(
            field_selector=RUNNING_PODS, _preload_content=False, _request_timeout=REQUEST_SECONDS
        )
        items: list[dict[str, Any]] = self._json(found).get("items") or []
        return items

    def _list_reports(self) -> list[GpuReport]:
        found = self._leases.list_namespaced_lease(
            self.namespace,
            label_selector=f"{GPU_REPORT_LABEL}=true",
            _preload_content=False,
            _request_timeout=REQUEST_SECONDS,
        )
        reports = (gpu_report_from_lease(lease) for lease in self._json(found).get("items") or [])
        return [report for report in reports if report is not None]

    def _read_profile(self) -> dict[str, str] | None:
        try:
            found = self._core.read_namespaced_config_map(
                CONFIGMAP_NAME,
                self.namespace,
                _preload_content=False,
                _request_timeout=REQUEST_SECONDS,
            )
        except ApiException as error:
            if error.status == NOT_FOUND:
                return None
            raise
        data: dict[str, str] = self._json(found).get("data") or {}
        return data

    def _write_profile(self, data: dict[str, str]) -> None:
        """Patch the ConfigMap's data; create it when it is not there."""
        try:
            self._core.patch_namespaced_config_map(
                CONFIGMAP_NAME, self.namespace, {"data": data}, _request_timeout=REQUEST_SECONDS
            )
            return
        except ApiException as error:
            if error.status != NOT_FOUND:
                raise
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": CONFIGMAP_NAME,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "modelserve-gateway"},
            },
            "data": data,
        }
        try:
            self._core.create_namespaced_config_map(
                self.namespace, body, _request_timeout=REQUEST_SECONDS
            )
        except ApiException as error:
            if error.status != CONFLICT:
                raise
            self._core.patch_namespaced_config_map(
                CONFIGMAP_NAME, self.namespace, {"data": data}, _request_timeout=REQUEST_SECONDS
            )
