"""The gateways' load reports, kept in memory from a list and watch of their Leases.

An own watch, not a kopf handler: kopf watches every resource in the namespaces it serves
(OPERATOR_NAMESPACES), while the Leases live in the gateway's namespace, which need not be
one of them; and the operator may read Leases there only. Every change calls `on_change`
at once: a request held for a sleeping model wakes the autoscaler within one event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from modelserve.common.load_reports import LOAD_LABEL, LoadReport, report_from_lease
from modelserve.operator.cluster import Cluster, ClusterError

logger = logging.getLogger(__name__)
LEASES = ("coordination.k8s.io/v1", "Lease")
SELECTOR = f"{LOAD_LABEL}=true"


class LoadReports:
    """The latest report of each gateway replica, by Lease name."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._reports: dict[str, LoadReport] = {}
        self._on_change = on_change

    def all(self) -> list[LoadReport]:
        return list(self._reports.values())

    def replace(self, leases: list[dict[str, Any]]) -> None:
        self._reports = {
            lease["metadata"]["name"]: report
            for lease in leases
            if (report := report_from_lease(lease)) is not None
        }
        self._on_change()

    def update(self, event: str, lease: dict[str, Any]) -> None:
        name = lease["metadata"]["name"]
        report = report_from_lease(lease) if event != "DELETED" else None
        if report is None:
            self._reports.pop(name, None)
        else:
            self._reports[name] = report
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
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        raise ClusterError(f"watch leases: {obj.get('message')}", status=410)
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        reports.update(str(kind), obj)
        except ClusterError as error:
            if error.status != 410:
                logger.warning("gateway load reports in %s: %s", namespace, error)
                await asyncio.sleep(retry_seconds)
