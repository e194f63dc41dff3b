"""The gateways' load reports, kept in memory from a list and watch of their Leases.

An own watch, not a kopf handler: kopf watches every resource in the namespaces it serves
(OPERATOR_NAMESPACES), while the Leases live in the gateway's namespace, which need not be
one of them; and the operator may read Leases there only. Every change calls `on_change`
at once: a request held for a sleeping model wakes the autoscaler within one event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from modelserve.common.load_reports import LOAD_LABEL, LoadReport, report_from_lease
from modelserve.operator.cluster import Cluster, ClusterError

logger = logging.getLogger(__name__)
LEASES = ("coordination.k8s.io/v1", "Lease")
SELECTOR = f"{LOAD_LABEL}=true"
# A Lease found by a list (at start, or after the watch lost its place) that this
# operator has not seen before may have been left long ago by a replica that died
# without deleting it. Only then is the gateway's own renewTime read, with a tolerance
# far beyond any clock skew between machines.
STALE_SECONDS = 300.0
# A report expired for this long is forgotten (a replica that died leaves its Lease).
FORGET_SECONDS = 600.0


@dataclasses.dataclass(frozen=True)
class _Received:
    report: LoadReport
    version: str  # the Lease's resourceVersion: the same on a re-list means no renewal


def _parsed(lease: Any) -> tuple[str, str, LoadReport | None] | None:
    """(name, resourceVersion, report) of a Lease; None where it is too malformed to
    name (skipped: one bad Lease must not stop the watch)."""
    try:
        meta = lease["metadata"]
        name, version = str(meta["name"]), str(meta.get("resourceVersion") or "")
        return name, version, report_from_lease(lease)
    except (KeyError, TypeError, AttributeError, ValueError):
        return None


class LoadReports:
    """The latest report of each gateway replica, by Lease name.

    Liveness is judged on this operator's clock only: a report counts as renewed when the
    operator received it (a list or a watch event), not at the Lease's renewTime, which
    is the gateway machine's clock. Compared with ours, a gateway clock behind by more
    than the Lease's duration would make a live replica look dead (a drain would go on
    without its word, and its held requests would not wake their model), and one ahead
    would keep a dead replica alive.
    """

    def __init__(self, on_change: Callable[[], None], clock: Callable[[], float] = time.time):
        self._received: dict[str, _Received] = {}
        self._on_change = on_change
        self._clock = clock

    def all(self) -> list[LoadReport]:
        now = self._clock()
        for name, found in list(self._received.items()):
            if not found.report.live(now - FORGET_SECONDS):
                del self._received[name]
        return [found.report for found in self._received.values()]

    def replace(self, leases: list[dict[str, Any]]) -> None:
        now = self._clock()
        received: dict[str, _Received] = {}
        for lease in leases:
            name, version, report = _parsed(lease) or ("", "", None)
            if report is None:
                continue
            known = self._received.get(name)
            if known is not None and known.version == version:
                received[name] = known  # not renewed since we last saw it
            elif report.renewed + report.duration + STALE_SECONDS < now:
                received[name] = _Received(report, version)  # left long ago: dead
            else:
                received[name] = _Received(dataclasses.replace(report, renewed=now), version)
        self._received = received
        self._on_change()

    def update(self, event: str, lease: Mapping[str, Any]) -> None:
        parsed = _parsed(lease)
        if parsed is None:
            logger.warning("a gateway load Lease without a name, skipped: %.200r", lease)
            return
        name, version, report = parsed
        if event == "DELETED" or report is None:
            self._received.pop(name, None)
        else:
            renewed = dataclasses.replace(report, renewed=self._clock())
            self._received[name] = _Received(renewed, version)
        self._on_change()


async def follow_leases(
    cluster: Cluster, namespace: str, reports: LoadReports, retry_seconds: float = 2.0
) -> None:
    """List the Leases, then watch them; list again when the watch ends or fails. Forever."""
    while True:
        try:
            found = await cluster.list_objects(*LEASES, namespace, SELECTOR)
            reports.replace(list(found.get("items") or []))
            version = str(found["metadata"].get("resourceVersion") or "")
            while True:
                async for event in cluster.watch(*LEASES, namespace, SELECTOR, version):
                    kind, obj = event.get("type"), event.get("object")
                    if not isinstance(obj, dict):
                        continue
                    if kind == "ERROR":
                        raise ClusterError(f"watch leases: {obj.get('message')}", status=410)
                    meta = obj.get("metadata")
                    if isinstance(meta, dict) and meta.get("resourceVersion"):
                        version = str(meta["resourceVersion"])
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        reports.update(str(kind), obj)
        except ClusterError as error:
            if error.status != 410:
                logger.warning("gateway load reports in %s: %s", namespace, error)
                await asyncio.sleep(retry_seconds)
