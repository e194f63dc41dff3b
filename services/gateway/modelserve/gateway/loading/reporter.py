"""This replica's load report: a Lease in `namespace` that the operator reads
(`modelserve.common.load_reports`), renewed every `period` seconds, and written at once
(coalesced over a few milliseconds) when it matters for the operator:

- a server gets its first held request (the operator wakes a model on it);
- a drain token appears or goes (acknowledged: this replica sends that server no new
  request, see `RouteTable.serving`);
- the requests of a server being drained change (the operator puts it to sleep once no
  replica has any);
- a pod drain token appears or goes (status.podDrain: this replica sends those pods no
  new request, see `RouteTable.endpoints_of`), and the requests of a server with one
  change (the report counts them per pod; the operator lets the pods go at none).

The `kubernetes` client is synchronous: each write runs in a thread. A failed write (the
API server refused it, or the network failed: a timeout, a reset connection) is logged
and counted, and the next one tries again on the normal period; the loop runs supervised
(restarted after any bug), so a report never takes the gateway down. The Lease is
deleted at shutdown.

A replica that dies (SIGKILL, a lost node) leaves its Lease behind, expired; the chart
names each after its pod, so every rollout would leave more. Every `SWEEP_SECONDS` each
replica deletes the load-report Leases of its namespace not renewed for `stale_seconds`
(by default 10 lease durations and at least `MIN_STALE_SECONDS`: far beyond any clock
skew between replicas, and long after the operator stopped counting them). The delete
is conditional on the Lease's resourceVersion: one renewed meanwhile stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import socket
import time
import uuid
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modelserve.common.leases import delete_lease, put_lease
from modelserve.common.load_reports import (
    LOAD_LABEL,
    LoadReport,
    ServerLoad,
    build_lease,
    lease_name,
)
from modelserve.common.supervision import start_supervised
from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.routing import RouteTable

logger = logging.getLogger(__name__)
NOT_FOUND, CONFLICT = 404, 409
# Changes within this long go out in one write.
COALESCE_SECONDS = 0.005
# Seconds one API call may take.
REQUEST_SECONDS = 5
# What a call to the API server may fail with, short of a bug: its refusal, or the
# network's (urllib3's timeouts, retries given up, broken connections; socket errors).
API_FAILURES = (ApiException, HTTPError, OSError)
# Seconds between two sweeps of the Leases that dead replicas left.
SWEEP_SECONDS = 300.0
# A Lease not renewed for this long (at least) is a dead replica's.
MIN_STALE_SECONDS = 600.0
STALE_DURATIONS = 10


def default_replica_id() -> str:
    """The host's name (a pod's name) with the process id and a random part, as a Lease
    name takes it."""
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-") or "gateway"
    return f"{host[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def draining(table: RouteTable) -> dict[str, str]:
    """The drain tokens this replica acknowledges: every one it has seen (it sends
    those servers no new request from the moment the table has them)."""
    return {
        target.server_id: target.loading.drain_token
        for target in table.servers()
        if target.loading.drain_token is not None
    }


def pod_draining(table: RouteTable) -> dict[str, str]:
    """The pod drain tokens this replica acknowledges: every one it has seen."""
    return {
        target.server_id: target.loading.pod_drain_token
        for target in table.servers()
        if target.loading.pod_drain_token is not None
    }


def report_of(
    replica: str, table: RouteTable, book: LoadBook, duration: float, now: float
) -> LoadReport:
    known = {target.server_id for target in table.servers()}
    servers = book.report(known)
    for target in table.servers():
        pods = table.pod_loads(target)
        if pods:
            load = servers.get(target.server_id, ServerLoad())
            servers[target.server_id] = dataclasses.replace(load, pods=pods)
    return LoadReport(
        replica=replica,
        renewed=now,
        duration=duration,
        servers=servers,
        draining=draining(table),
        pod_draining=pod_draining(table),
    )


class LoadReporter:
    def __init__(
        self,
        api: k8s.ApiClient,
        table: RouteTable,
        book: LoadBook,
        metrics: GatewayMetrics,
        *,
        replica: str,
        namespace: str,
        period: float,
        duration: float,
        sweep_seconds: float = SWEEP_SECONDS,
        stale_seconds: float | None = None,
    ) -> None:
        self._leases = k8s.CoordinationV1Api(api)
        self._table = table
        self._book = book
        self._metrics = metrics
        self.replica = replica
        self.namespace = namespace
        self._period = period
        self._duration = duration
        self._due = asyncio.Event()
        self._acknowledged: dict[str, str] = {}
        self._pods_acknowledged: dict[str, str] = {}
        self._sweep_seconds = sweep_seconds
        self.stale_seconds = (
            stale_seconds
            if stale_seconds is not None
            else max(STALE_DURATIONS * duration, MIN_STALE_SECONDS)
        )
        self._tasks: list[asyncio.Task[None]] = []
        table.changes.listen(self._table_changed)
        book.listen(self._book_changed)

    # --- When to write at once (called on the loop) ------------------------------------

    def _table_changed(self) -> None:
        if (
            draining(self._table) != self._acknowledged
            or pod_draining(self._table) != self._pods_acknowledged
        ):
            self._due.set()

    def _book_changed(self, server_id: str, first_held: bool) -> None:
        if first_held or server_id in self._acknowledged or server_id in self._pods_acknowledged:
            self._due.set()

    # --- The loop ----------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            start_supervised("load report", self._run),
            start_supervised("load report sweep", self._sweep_loop),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await asyncio.to_thread(self._delete)
        except API_FAILURES as error:
            logger.warning("the load report %s was not deleted: %s", self._name, _why(error))

    @property
    def _name(self) -> str:
        return lease_name(self.replica)

    async def _run(self) -> None:
        while True:
            await self.write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self._period)
                await asyncio.sleep(COALESCE_SECONDS)

    async def write(self) -> bool:
        """Write the report now; False when the API server refused it (logged)."""
        self._due.clear()
        report = report_of(self.replica, self._table, self._book, self._duration, time.time())
        body = build_lease(report, self.namespace)
        try:
            await asyncio.to_thread(self._put, body)
        except API_FAILURES as error:
            self._metrics.load_reports.labels("failed").inc()
            logger.warning(
                "the load report %s/%s was not written: %s", self.namespace, self._name, _why(error)
            )
            return False
        self._acknowledged = dict(report.draining)
        self._pods_acknowledged = dict(report.pod_draining)
        self._metrics.load_reports.labels("written").inc()
        return True

    async def _sweep_loop(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(self._sweep_seconds)

    async def sweep(self) -> list[str]:
        """Delete the Leases of dead replicas (not renewed for `stale_seconds`); their
        names. A failure is logged: the next sweep tries again."""
        try:
            swept = await asyncio.to_thread(self._sweep, time.time())
        except API_FAILURES as error:
            logger.warning("the load reports of %s were not swept: %s", self.namespace, _why(error))
            return []
        for name in swept:
            logger.info("deleted the load report %s/%s of a dead replica", self.namespace, name)
        return swept

    # --- In a thread -------------------------------------------------------------------

    def _sweep(self, now: float) -> list[str]:
        found = self._leases.list_namespaced_lease(
            self.namespace, label_selector=f"{LOAD_LABEL}=true", _request_timeout=REQUEST_SECONDS
        )
        swept = []
        for lease in found.items:
            meta, spec = lease.metadata, lease.spec
            if meta.name == self._name:
                continue
            renewed = (spec and (spec.renew_time or spec.acquire_time)) or meta.creation_timestamp
            if renewed is None or now - renewed.timestamp() < self.stale_seconds:
                continue
            # Only the version read: a Lease renewed since then is alive after all.
            unchanged = k8s.V1DeleteOptions(
                preconditions=k8s.V1Preconditions(resource_version=meta.resource_version)
            )
            try:
                self._leases.delete_namespaced_lease(
                    meta.name, self.namespace, body=unchanged, _request_timeout=REQUEST_SECONDS
                )
            except ApiException as error:
                if error.status not in (NOT_FOUND, CONFLICT):
                    raise
                continue
            swept.append(meta.name)
        return swept

    def _put(self, body: dict[str, Any]) -> None:
        put_lease(self._leases, self._name, self.namespace, body, timeout=REQUEST_SECONDS)

    def _delete(self) -> None:
        delete_lease(self._leases, self._name, self.namespace, timeout=REQUEST_SECONDS)


def _why(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"
