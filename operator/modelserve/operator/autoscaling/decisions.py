"""Pure decisions of the autoscaler: how many replicas, when to sleep, whether a drain is
done, which models to evict, which replicas go when a model scales down and when they
may. No I/O, no clock: `now` is always given.

Times are seconds since the epoch (floats), as in the gateways' load reports.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from modelserve.common.load_reports import LoadReport, ServerLoad, summed
from modelserve.common.modelserve import Autoscaling
from modelserve.common.timestamps import rfc3339

Key = tuple[str, str]
IDLE, EVICTED = "Idle", "Evicted"
NO_EVICTABLE, WAITING_FOR_EVICTION = "NoEvictableModel", "WaitingForEviction"


def named(key: Key) -> str:
    """The full name, for the operator's own log lines only."""
    return f"{key[0]}/{key[1]}"


OTHER_NAMESPACE = "a model in another namespace"


def shown(key: Key, reader: str) -> str:
    """A model as a text read in namespace `reader` names it: its name in that namespace;
    in another, not at all. Statuses and Events are read by their namespace's owner (and
    the gateway copies the Scheduled condition into API error bodies): other tenants'
    model names are not theirs to see."""
    return key[1] if key[0] == reader else OTHER_NAMESPACE


def listed(keys: Sequence[Key], reader: str) -> str:
    """Several models as `shown`, those of other namespaces counted."""
    names = [key[1] for key in keys if key[0] == reader]
    others = len(keys) - len(names)
    if others:
        names.append(OTHER_NAMESPACE if others == 1 else f"{others} models in other namespaces")
    return ", ".join(names)


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
            "since": rfc3339(self.since),
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


@dataclasses.dataclass(frozen=True)
class PodDrain:
    """status.podDrain: these replicas (pods) of an awake model go once every gateway
    replica sends them nothing new and none has a request on them. In memory only:
    `acknowledged_at`, when every live gateway replica first acknowledged the token;
    `lowered_at`, when the Deployment was lowered (the fence stays until they terminate)."""

    token: str
    pods: tuple[str, ...]
    since: float
    # Not compared: the status does not show it, so setting it is no change to write.
    acknowledged_at: float | None = dataclasses.field(default=None, compare=False)
    lowered_at: float | None = dataclasses.field(default=None, compare=False)

    def to_status(self) -> dict[str, Any]:
        return {"token": self.token, "pods": list(self.pods), "since": rfc3339(self.since)}

    @classmethod
    def from_status(cls, found: Mapping[str, Any] | None, now: float) -> PodDrain | None:
        if not found or not found.get("token") or not found.get("pods"):
            return None
        # After a restart the acknowledgements are counted from now on.
        return cls(token=str(found["token"]), pods=tuple(str(p) for p in found["pods"]), since=now)


@dataclasses.dataclass(frozen=True)
class PodLoad:
    """A pod of the model as the choice of the replicas that go sees it."""

    name: str
    ready: bool
    created: float  # seconds since the epoch
    in_flight: int = 0  # over every live gateway replica


def pods_to_drain(pods: Sequence[PodLoad], count: int) -> tuple[str, ...] | None:
    """The `count` Ready pods that go when a model scales down: the fewest requests in
    flight first, the newest first among equals (it has warmed up least), then by name.
    None when no fence is needed or none can be built: pods that are not Ready are
    `count` or more (the ReplicaSet removes those first), or too few are Ready."""
    not_ready = [pod for pod in pods if not pod.ready]
    ready = [pod for pod in pods if pod.ready]
    if count <= 0 or len(not_ready) >= count or len(ready) < count:
        return None
    ranked = sorted(ready, key=lambda pod: (pod.in_flight, -pod.created, pod.name))
    return tuple(pod.name for pod in ranked[:count])


class PodDrainOutcome(StrEnum):
    WAIT = "wait"
    DONE = "done"  # no request on the pods: let them go
    OVERDUE = "overdue"  # requests still on them after the bound: let them go anyway
    CANCEL_LOAD = "cancel-load"  # the load wants the replicas again
    CANCEL_ACK = "cancel-ack"  # not every gateway replica acknowledged in time
    GONE = "gone"  # a chosen pod is no longer Ready (or gone): scale down without a fence


def pod_drain_outcome(
    drain: PodDrain,
    uid: str,
    reports: Iterable[LoadReport],
    *,
    desired: int,
    wanted: int,
    ready_pods: Collection[str],
    now: float,
    ack_seconds: float,
    drain_seconds: float,
) -> tuple[PodDrainOutcome, PodDrain]:
    """What becomes of a pod drain (and the drain, with when it was acknowledged).

    CANCEL_LOAD when the load wants `desired` replicas (or more) again; GONE when a chosen
    pod stopped being Ready or went away (the ReplicaSet removes such pods first); then,
    once every live report acknowledged the token: DONE with no request in flight on the
    chosen pods, OVERDUE when they still have some `drain_seconds` after that
    acknowledgement (long requests are what the fence waits for, but not forever), else
    WAIT; before that, CANCEL_ACK after `ack_seconds`, else WAIT. A request on a chosen
    pod never cancels: it came before the fence and is let finish."""
    if wanted >= desired:
        return PodDrainOutcome.CANCEL_LOAD, drain
    if any(pod not in ready_pods for pod in drain.pods):
        return PodDrainOutcome.GONE, drain
    live = [report for report in reports if report.live(now)]
    if any(report.pod_draining.get(uid) != drain.token for report in live):
        if now - drain.since > ack_seconds:
            return PodDrainOutcome.CANCEL_ACK, drain
        return PodDrainOutcome.WAIT, drain
    if drain.acknowledged_at is None:
        drain = dataclasses.replace(drain, acknowledged_at=now)
    load = summed(live, now).get(uid, ServerLoad())
    if not any(load.pods.get(pod, 0) for pod in drain.pods):
        return PodDrainOutcome.DONE, drain
    assert drain.acknowledged_at is not None
    if now - drain.acknowledged_at > drain_seconds:
        return PodDrainOutcome.OVERDUE, drain
    return PodDrainOutcome.WAIT, drain


def pod_drain_released(
    drain: PodDrain, live_pods: Collection[str], now: float, grace: float
) -> bool:
    """Whether a lowered pod drain may end: none of its pods is left but terminating ones
    (`live_pods`: the model's pods not being deleted), or `grace` passed since it was
    lowered (the ReplicaSet removed others)."""
    assert drain.lowered_at is not None
    gone = not any(pod in live_pods for pod in drain.pods)
    return gone or now - drain.lowered_at > grace


def initial_replicas(spec_replicas: int, autoscaling: Autoscaling) -> int:
    """What a ModelServe first runs (spec.replicas), or what an earlier operator left
    (status.desiredReplicas), clamped into [min, max]."""
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
    desired: int,
    load: int,
    average: float,
    autoscaling: Autoscaling,
    cap: int | None = None,
    *,
    now: float,
    changed_at: float,
) -> int:
    """Replicas for the load of an awake model: up at once to what the load needs now (at
    most max, and `cap` while more GPUs are known to be missing); down only once
    `window_seconds` have passed since the last change (`changed_at`: a scale-up, an
    activation, or the operator's first sight of the model), and then to what the window's
    average needs; never below min nor below 1 (sleeping is the drain's business).

    Why the wait: right after a change the window still holds the samples from before it
    (a quiet minute before a burst, or a single sample after a restart), and its average
    would undo the change at the next pass, again and again."""
    if desired == 0:
        return 0
    target = autoscaling.target_requests
    top = autoscaling.max_replicas if cap is None else max(1, min(cap, autoscaling.max_replicas))
    up = math.ceil(load / target)
    if up > desired:
        wanted = up
    elif now - changed_at < autoscaling.window_seconds:
        wanted = desired
    else:
        wanted = min(desired, math.ceil(average / target))
    # minReplicas holds even against the GPU cap: the spec asks for them; a replica that
    # finds no GPU stays Pending, and the status says so.
    return max(autoscaling.min_replicas, 1, min(top, wanted))


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
    # GPUs it holds: those of each of its placed pods (every pod of a group over several
    # nodes holds spec.resources.gpus of its own).
    gpus: int
    pinned: bool
    priority: int
    busy: bool  # a request in flight or held on some live gateway replica
    activated_at: float | None
    last_used: float
    min_residence_seconds: int
    draining: bool = False  # already being put to sleep
    min_replicas: int = 0  # above 0 it would be woken straight back: never a victim


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


@dataclasses.dataclass(frozen=True)
class _Why:
    """Why a candidate cannot go now, as a phrase after its name ("is", "pinned")."""

    verb: str  # singular; the plural is in PLURAL_VERBS
    rest: str


PLURAL_VERBS = {"is": "are", "has": "have", "keeps": "keep", "woke": "woke"}


def _reasons(found: Sequence[tuple[Key, _Why]], reader: str) -> list[str]:
    """One reason per model of `reader`'s namespace, by name; the models of other
    namespaces counted per reason, never named."""
    reasons = [f"{key[1]} {why.verb} {why.rest}" for key, why in found if key[0] == reader]
    others: dict[_Why, int] = {}
    for key, why in found:
        if key[0] != reader:
            others[why] = others.get(why, 0) + 1
    for why, count in others.items():
        if count == 1:
            reasons.append(f"{OTHER_NAMESPACE} {why.verb} {why.rest}")
        else:
            verb = PLURAL_VERBS.get(why.verb, why.verb)
            reasons.append(f"{count} models in other namespaces {verb} {why.rest}")
    return reasons


def plan_eviction(
    *,
    namespace: str,
    gpu_type: str | None,
    priority: int,
    needed: int,
    candidates: Sequence[Candidate],
    now: float,
) -> EvictionPlan:
    """Which models to put to sleep so that `needed` GPUs of `gpu_type` come free for a
    model of `priority` in `namespace`. `candidates` are the other awake autoscaled models
    with GPUs of exactly that type (None matches None only). The message is for the
    waiting model's status: models of other namespaces are counted, not named."""
    lasting: list[tuple[Key, _Why]] = []
    passing: list[tuple[Candidate, _Why]] = []
    ready: list[Candidate] = []
    for found in candidates:
        if found.pinned:
            lasting.append((found.key, _Why("is", "pinned")))
        elif found.priority > priority:
            lasting.append((found.key, _Why("has", f"priority {found.priority} above {priority}")))
        elif found.min_replicas > 0:
            lasting.append((found.key, _Why("keeps", f"minReplicas {found.min_replicas}")))
        elif found.busy:
            passing.append((found, _Why("has", "requests in flight or held")))
        elif found.draining:
            passing.append((found, _Why("is", "being put to sleep already")))
        elif (
            found.activated_at is not None
            and now - found.activated_at < found.min_residence_seconds
        ):
            age = round(now - found.activated_at)
            residence = found.min_residence_seconds
            passing.append((found, _Why("woke", f"{age} s ago (minimum residence {residence} s)")))
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
    waits = [(found.key, why) for found, why in passing]
    if possible >= needed:
        reasons = _reasons(waits, namespace)
        return EvictionPlan(blocked=WAITING_FOR_EVICTION, message=f"{head}: {'; '.join(reasons)}")
    reasons = _reasons(lasting + waits, namespace)
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
    pod_drain: PodDrain | None = None
    sleep_message: str = ""
    blocked: tuple[str, str] | None = None  # (reason, message) of the Scheduled condition
    note: str = ""  # why fewer replicas run than the load asks for
