"""Pure decisions of the autoscaler: how many replicas, when to sleep, whether a drain is
done, which models to evict. No I/O, no clock: `now` is always given.

Times are seconds since the epoch (floats), as in the gateways' load reports.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from modelserve.common.load_reports import LoadReport, ServerLoad
from modelserve.common.modelserve import Autoscaling

Key = tuple[str, str]
IDLE, EVICTED = "Idle", "Evicted"
NO_EVICTABLE, WAITING_FOR_EVICTION = "NoEvictableModel", "WaitingForEviction"


def stamp(seconds: float) -> str:
    """RFC 3339, as the CRD's date-time fields take it."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def named(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


@dataclasses.dataclass(frozen=True)
class Drain:
    """status.drain: the model is being put to sleep once every gateway replica agrees.
    `for_model` (in memory only) is the model an eviction makes room for."""

    token: str
    reason: str  # IDLE or EVICTED
    message: str
    since: float
    for_model: Key | None = None

    def to_status(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "reason": self.reason,
            "message": self.message,
            "since": stamp(self.since),
        }

    @classmethod
    def from_status(cls, found: Mapping[str, Any] | None, now: float) -> Drain | None:
        if not found or not found.get("token"):
            return None
        return cls(
            token=str(found["token"]),
            reason=str(found.get("reason") or IDLE),
            message=str(found.get("message") or ""),
            # After a restart the acknowledgements are counted from now on.
            since=now,
        )


class DrainOutcome(StrEnum):
    WAIT = "wait"
    DONE = "done"
    CANCEL = "cancel"


def drain_outcome(
    drain: Drain, uid: str, reports: Iterable[LoadReport], now: float, ack_seconds: float
) -> DrainOutcome:
    """DONE once every live report acknowledged the token with no request in flight or held
    for the model; CANCEL when one that acknowledged has one (a request came), or when not
    all acknowledged within `ack_seconds`. Dead replicas' reports do not count."""
    live = [report for report in reports if report.live(now)]
    acknowledged = [report for report in live if report.draining.get(uid) == drain.token]
    if any(report.servers.get(uid, ServerLoad()).busy for report in acknowledged):
        return DrainOutcome.CANCEL
    if len(acknowledged) == len(live):
        return DrainOutcome.DONE
    if now - drain.since > ack_seconds:
        return DrainOutcome.CANCEL
    return DrainOutcome.WAIT


def initial_replicas(spec_replicas: int, autoscaling: Autoscaling) -> int:
    """What a ModelServe first runs: spec.replicas clamped into [min, max]."""
    return min(max(spec_replicas, autoscaling.min_replicas), autoscaling.max_replicas)


@dataclasses.dataclass
class LoadWindow:
    """Samples of a model's load (requests in flight and held) over the last seconds."""

    samples: deque[tuple[float, int]] = dataclasses.field(default_factory=deque)

    def add(self, now: float, load: int, window: float) -> None:
        self.samples.append((now, load))
        while self.samples and self.samples[0][0] < now - window:
            self.samples.popleft()

    def average(self) -> float:
        return sum(load for _, load in self.samples) / len(self.samples) if self.samples else 0.0


def scaled_replicas(
    desired: int, load: int, average: float, autoscaling: Autoscaling, cap: int | None = None
) -> int:
    """Replicas for the load of an awake model: up at once to what the load needs now (at
    most max, and `cap` while more GPUs are known to be missing), down only to what the
    window's average needs, never below min nor below 1 (sleeping is the drain's business)."""
    if desired == 0:
        return 0
    target = autoscaling.target_requests
    top = autoscaling.max_replicas if cap is None else max(1, min(cap, autoscaling.max_replicas))
    up = min(top, math.ceil(load / target))
    if up > desired:
        return up
    down = max(autoscaling.min_replicas, 1, min(top, math.ceil(average / target)))
    return down if down < desired else desired


def idle_seconds(
    last_used: float, activated_at: float | None, created: float | None, now: float
) -> float:
    """How long the model has had no request: since its last use, else since it was
    activated, else since it was created."""
    since = max(last_used, activated_at or 0.0, created or 0.0)
    return now - since if since else 0.0


def should_sleep(autoscaling: Autoscaling, desired: int, busy: bool, idle: float) -> bool:
    return (
        autoscaling.min_replicas == 0
        and not autoscaling.pinned
        and desired > 0
        and not busy
        and idle >= autoscaling.idle_timeout_seconds
    )


@dataclasses.dataclass(frozen=True)
class Candidate:
    """Another awake model on the same GPU type, as the eviction choice sees it."""

    key: Key
    gpus: int  # GPUs it holds: per replica times replicas placed
    pinned: bool
    priority: int
    busy: bool  # a request in flight or held on some live gateway replica
    activated_at: float | None
    last_used: float
    min_residence_seconds: int
    draining: bool = False  # already being put to sleep


@dataclasses.dataclass(frozen=True)
class EvictionPlan:
    """Either victims to put to sleep (least recently used first), or why none: `blocked`
    is NO_EVICTABLE (nothing can help now, for a lasting reason) or WAITING_FOR_EVICTION
    (models that could help are busy or inside their residence time)."""

    victims: tuple[Key, ...] = ()
    blocked: str | None = None
    message: str = ""


def gpu_type_name(gpu_type: str | None) -> str:
    return gpu_type or "(no gpuType)"


def plan_eviction(
    *,
    gpu_type: str | None,
    priority: int,
    needed: int,
    candidates: Sequence[Candidate],
    now: float,
) -> EvictionPlan:
    """Which models to put to sleep so that `needed` GPUs of `gpu_type` come free for a
    model of `priority`. `candidates` are the other awake autoscaled models with GPUs of
    exactly that type (None matches None only)."""
    lasting: list[str] = []
    passing: list[tuple[Candidate, str]] = []
    ready: list[Candidate] = []
    for found in candidates:
        who = named(found.key)
        if found.pinned:
            lasting.append(f"{who} is pinned")
        elif found.priority > priority:
            lasting.append(f"{who} has priority {found.priority} above {priority}")
        elif found.busy:
            passing.append((found, f"{who} has requests in flight or held"))
        elif found.draining:
            passing.append((found, f"{who} is being put to sleep already"))
        elif (
            found.activated_at is not None
            and now - found.activated_at < found.min_residence_seconds
        ):
            age = round(now - found.activated_at)
            residence = found.min_residence_seconds
            passing.append((found, f"{who} woke {age} s ago (minimum residence {residence} s)"))
        else:
            ready.append(found)
    victims: list[Key] = []
    freed = 0
    for found in sorted(ready, key=lambda c: (c.last_used, c.key)):
        if freed >= needed:
            break
        victims.append(found.key)
        freed += found.gpus
    if victims and freed >= needed:
        return EvictionPlan(victims=tuple(victims))
    head = f"no GPU of type {gpu_type_name(gpu_type)} free"
    possible = freed + sum(found.gpus for found, _ in passing)
    if possible >= needed:
        reasons = [why for _, why in passing]
        return EvictionPlan(blocked=WAITING_FOR_EVICTION, message=f"{head}: {'; '.join(reasons)}")
    reasons = lasting + [why for _, why in passing]
    if not candidates:
        reasons = [
            f"no other model with spec.autoscaling holds GPUs of type {gpu_type_name(gpu_type)}"
        ]
    elif not reasons:
        reasons = [f"evicting every other model would free {possible} of {needed} GPUs"]
    else:
        reasons.append(f"evicting all that may be would free {possible} of {needed} GPUs")
    return EvictionPlan(blocked=NO_EVICTABLE, message=f"{head}: {'; '.join(reasons)}")


@dataclasses.dataclass(frozen=True)
class AutoscaleView:
    """What the status shows of the autoscaler's state for one model."""

    desired: int
    last_request: float | None = None
    activated_at: float | None = None
    drain: Drain | None = None
    sleep_message: str = ""
    blocked: tuple[str, str] | None = None  # (reason, message) of the Scheduled condition
    note: str = ""  # why fewer replicas run than the load asks for
