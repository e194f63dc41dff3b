"""What each gateway replica tells the operator about its requests: one Lease per replica.

Dynamic loading needs the requests of every gateway replica in one place: the operator
wakes a sleeping model when any replica holds a request for it, scales a model on the
requests in flight and held across replicas, and puts a model to sleep only when no
replica has a request for it. Each replica keeps a `coordination.k8s.io/v1` Lease in its
own namespace (label LOAD_LABEL), renewed every few seconds and at once when a request is
first held, whose annotation LOAD_ANNOTATION is a `LoadReport` as JSON. A replica whose
Lease has expired (not renewed for `leaseDurationSeconds`) is dead: its report no longer
counts.

The drain fence: before the operator puts a model to sleep it writes a drain token in the
ModelServe's `status.drain`. A replica that sees it sends that model no new request
(it holds them) and acknowledges the token in `draining`, with its requests in flight and
held for the model. The operator scales the model to zero only once every live replica
acknowledged the token with none; a replica that reports a request for it cancels the
drain.

The pod drain fence does the same for one replica of a model that scales down (N to
N-1, N-1 >= 1): the operator names the pods that go in `status.podDrain`; a replica
that sees it sends those pods no new request and acknowledges the token in
`pod_draining`; each report counts the requests in flight per pod (`ServerLoad.pods`),
and the operator lets the pods go once none has any.

Pure functions: building and reading the Lease, and summing the live reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from modelserve.common.leases import build_report_lease, read_report_lease
from modelserve.common.modelserve import GROUP

LOAD_LABEL = f"{GROUP}/gateway-load"
LOAD_ANNOTATION = f"{GROUP}/load"
LEASE_PREFIX = "modelserve-gateway-"


@dataclasses.dataclass(frozen=True)
class ServerLoad:
    """One server's requests on one gateway replica (or summed over replicas)."""

    in_flight: int = 0
    held: int = 0
    last_used: float = 0.0  # seconds since the epoch of the latest request; 0: none yet
    # Requests in flight per pod (by pod name), the non-zero ones only.
    pods: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def busy(self) -> bool:
        return self.in_flight > 0 or self.held > 0

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "inFlight": self.in_flight,
            "held": self.held,
            "lastUsed": self.last_used,
        }
        if self.pods:
            wire["pods"] = dict(sorted(self.pods.items()))
        return wire

    @classmethod
    def from_wire(cls, found: Mapping[str, Any]) -> ServerLoad:
        pods = found.get("pods")
        counted = {str(pod): int(count or 0) for pod, count in (pods or {}).items()}
        return cls(
            in_flight=max(0, int(found.get("inFlight") or 0)),
            held=max(0, int(found.get("held") or 0)),
            last_used=float(found.get("lastUsed") or 0.0),
            pods={pod: count for pod, count in counted.items() if count > 0},
        )


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """One gateway replica's report: its requests per server (by ModelServe UID), the
    drain tokens it acknowledged (UID -> token) and the pod drain tokens it acknowledged
    (UID -> token)."""

    replica: str
    renewed: float  # seconds since the epoch
    duration: float  # seconds the report counts after `renewed`
    servers: Mapping[str, ServerLoad] = dataclasses.field(default_factory=dict)
    draining: Mapping[str, str] = dataclasses.field(default_factory=dict)
    pod_draining: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def live(self, now: float) -> bool:
        return now < self.renewed + self.duration


def lease_name(replica: str) -> str:
    return f"{LEASE_PREFIX}{replica}"[:253]


def build_lease(report: LoadReport, namespace: str) -> dict[str, Any]:
    """The Lease that carries `report` (for a create or a replace)."""
    payload: dict[str, Any] = {
        "servers": {uid: load.to_wire() for uid, load in sorted(report.servers.items())},
        "draining": dict(sorted(report.draining.items())),
    }
    if report.pod_draining:
        payload["podDraining"] = dict(sorted(report.pod_draining.items()))
    return build_report_lease(
        name=lease_name(report.replica),
        namespace=namespace,
        label=LOAD_LABEL,
        annotation=LOAD_ANNOTATION,
        holder=report.replica,
        payload=payload,
        duration=report.duration,
        renewed=report.renewed,
    )


def report_from_lease(body: Mapping[str, Any]) -> LoadReport | None:
    """The report a Lease carries; None for a Lease that is not one (or unreadable)."""
    lease = read_report_lease(body, LOAD_LABEL, LOAD_ANNOTATION)
    if lease is None:
        return None
    payload = lease.payload
    try:
        servers = {
            str(uid): ServerLoad.from_wire(found)
            for uid, found in (payload.get("servers") or {}).items()
            if isinstance(found, dict)
        }
        draining = {str(uid): str(token) for uid, token in (payload.get("draining") or {}).items()}
        pod_draining = {
            str(uid): str(token) for uid, token in (payload.get("podDraining") or {}).items()
        }
    except (ValueError, TypeError, AttributeError):
        return None
    return LoadReport(
        replica=lease.holder or lease.name,
        renewed=lease.renewed,
        duration=lease.duration,
        servers=servers,
        draining=draining,
        pod_draining=pod_draining,
    )


def summed(reports: Iterable[LoadReport], now: float) -> dict[str, ServerLoad]:
    """Each server's requests over the live reports: in flight and held added up (per pod
    too), the latest use."""
    total: dict[str, ServerLoad] = {}
    for report in reports:
        if not report.live(now):
            continue
        for uid, load in report.servers.items():
            known = total.get(uid, ServerLoad())
            pods = dict(known.pods)
            for pod, count in load.pods.items():
                pods[pod] = pods.get(pod, 0) + count
            total[uid] = ServerLoad(
                in_flight=known.in_flight + load.in_flight,
                held=known.held + load.held,
                last_used=max(known.last_used, load.last_used),
                pods=pods,
            )
    return total
