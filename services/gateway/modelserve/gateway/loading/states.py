"""Pure logic of dynamic loading: what becomes of a held request, and which state a
model is in.

A held request (`verdict`) goes on once its server serves (ready endpoint, no drain),
fails at once when waiting cannot help (the server went away, failed, or the operator
found no model to put to sleep for it while waking it), and waits otherwise.

`NoEvictableModel` counts only while the operator wakes the model (desiredReplicas >
0): once it gives up (0 again), a new request is held, which asks it to try again,
rather than failing on a stale condition forever.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable

from modelserve.common.modelserve import Runtime
from modelserve.gateway.routing import FAILED, SLEEPING, Target

NO_EVICTABLE_MODEL = "NoEvictableModel"
WAITING_FOR_EVICTION = "WaitingForEviction"


class ModelState(enum.StrEnum):
    """Where a model stands, for /v1/models and /health (best first)."""

    LOADED = "loaded"
    LOADING = "loading"
    SLEEPING = "sleeping"
    UNAVAILABLE = "unavailable"


_RANK = {state: rank for rank, state in enumerate(ModelState)}


@dataclasses.dataclass(frozen=True)
class Go:
    """The server serves: forward the request."""

    target: Target


@dataclasses.dataclass(frozen=True)
class Wait:
    """Not yet: why, for the client when its wait ends."""

    reason: str


@dataclasses.dataclass(frozen=True)
class Fail:
    """Waiting cannot help: `code` and `message` for a 503."""

    code: str
    message: str


Verdict = Go | Wait | Fail


def verdict(target: Target | None, serving: bool, *, model: str) -> Verdict:
    """What becomes of a request held for `target` (None: the server is gone) now;
    `serving`: the route table says it takes requests."""
    if target is None:
        return Fail("model_unavailable", f"the server of {model!r} was deleted")
    where = f"{target.namespace}/{target.name}"
    if target.deleting:
        return Fail("model_unavailable", f"{where} is being deleted")
    if target.phase == FAILED:
        detail = f": {target.message}" if target.message else ""
        return Fail("model_unavailable", f"{where} failed{detail}")
    if serving:
        return Go(target)
    loading = target.loading
    waking = (loading.desired_replicas or 0) > 0
    if loading.unscheduled_reason == NO_EVICTABLE_MODEL and waking and not target.draining:
        detail = f": {loading.unscheduled_message}" if loading.unscheduled_message else ""
        return Fail(
            "model_cannot_be_placed", f"{where} cannot be placed ({NO_EVICTABLE_MODEL}{detail})"
        )
    return Wait(_waiting_reason(target, waking))


def _waiting_reason(target: Target, waking: bool) -> str:
    loading = target.loading
    where = f"{target.namespace}/{target.name}"
    if target.draining:
        why = f" ({loading.drain_reason})" if loading.drain_reason else ""
        return f"{where} is being put to sleep{why}"
    if loading.unscheduled_reason == WAITING_FOR_EVICTION:
        detail = f": {loading.unscheduled_message}" if loading.unscheduled_message else ""
        return f"{where} waits for GPUs ({WAITING_FOR_EVICTION}{detail})"
    if waking:
        detail = f": {target.message}" if target.message else ""
        return f"{where} is loading ({target.phase}{detail})"
    return f"{where} is asleep and was asked to wake"


def model_state(target: Target, serving: bool, held: int) -> ModelState:
    """loaded: it serves; sleeping: asleep or being put to sleep; loading: replicas
    wanted (or requests held) and none ready yet; unavailable: anything else (failed,
    deleted, an external server that is not Ready, a server scaled to 0 by hand)."""
    if target.deleting or target.phase == FAILED:
        return ModelState.UNAVAILABLE
    if serving:
        return ModelState.LOADED
    if target.draining or target.phase == SLEEPING:
        return ModelState.SLEEPING
    if target.runtime is Runtime.EXTERNAL:
        return ModelState.UNAVAILABLE  # the operator's probe does not find it Ready
    desired = target.loading.desired_replicas
    wanted = desired if desired is not None else (0 if target.autoscaled else target.replicas)
    if wanted > 0 or held > 0:
        return ModelState.LOADING
    return ModelState.SLEEPING if target.autoscaled else ModelState.UNAVAILABLE


def best_state(states: Iterable[ModelState]) -> ModelState:
    """The state of a model served by several servers: the best of theirs."""
    return min(states, key=_RANK.__getitem__, default=ModelState.UNAVAILABLE)


def last_used(target: Target, used_here: float) -> float | None:
    """The latest request for the server, here or (by the operator's status) on any
    replica; None when there was none."""
    latest = max(used_here, target.loading.last_request)
    return latest if latest > 0 else None
