"""Set-active rollouts, pure: which model a server runs, and how a change of it ends.

A change of `spec.model.uri` on a server that ran a model to the end (status.model) is a
rollout. It starts only once the operator recorded it (status.rollout, phase
Progressing): until then the Deployment keeps the running model, so every gateway
replica knows of the rollout (and holds requests for a server with no ready replica)
before the first pod is replaced. The Deployment then replaces pods one at a time
(maxSurge 0, maxUnavailable 1: no spare GPU needed; with two replicas or more one always
answers).

It ends one of three ways:
- Complete: every replica runs the new model and is Ready; status.model becomes it.
- RolledBack: a pod of the new model failed (its fetch step: a digest that does not
  match, a file that is gone; or its server: a crash loop on a bad file), or the new
  model was not Ready within the deadline (counted while replicas are wanted: a sleeping
  model's deadline starts when it wakes). The servers go back to status.model and stay
  there while the spec names the same model with the same rollout id; a new change (a
  new `set_active`, another uri or rollout id) starts a new rollout.
- Superseded: the spec went back to the running model before the end.

A server's first model has nothing to go back to: it is not a rollout (a bad first
model makes the server Failed, as before).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from modelserve.common.modelserve import ModelServe
from modelserve.common.rollouts import (
    MODEL_VERSION_ANNOTATION,
    ROLLOUT_ANNOTATION,
    ModelVersion,
    Phase,
    Rollout,
    running_model,
)
from modelserve.common.timestamps import epoch_seconds, rfc3339
from modelserve.operator.status import DeploymentView, PodView

FETCH_FAILED = "FetchFailed"
SERVER_FAILED = "ServerFailed"
DEADLINE_EXCEEDED = "DeadlineExceeded"
NOT_RECORDED = "NotRecorded"


def requested(ms: ModelServe, annotations: Mapping[str, str]) -> tuple[ModelVersion, str]:
    """The model the spec asks for, and the id of the change that asked for it.

    The annotations are believed only while they describe the spec's uri: a version is
    stored as `models/<version>/…`, so a uri changed by hand (kubectl) without them is a
    change with no version and no id, not one of the registry's (whose history it would
    otherwise write into)."""
    uri = ms.spec.model.uri or ""
    version = _believed_version(uri, annotations)
    if version is None:
        return ModelVersion(uri), ""
    return ModelVersion(uri, version), annotations.get(ROLLOUT_ANNOTATION, "")


def _believed_version(uri: str, annotations: Mapping[str, str]) -> str | None:
    """The version the annotations name, if they describe `uri`."""
    version = annotations.get(MODEL_VERSION_ANNOTATION) or None
    return version if version is not None and f"/models/{version}/" in uri else None


def new_change(body: Mapping[str, Any]) -> bool:
    """Whether the spec asks for a change (its rollout id, believed as `requested` believes
    it) other than the one its status recorded last: a set_active of the model the spec
    names already, after a rollback from it, changes nothing else."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    rollout_id = annotations.get(ROLLOUT_ANNOTATION)
    uri = ((body.get("spec") or {}).get("model") or {}).get("uri") or ""
    recorded = ((body.get("status") or {}).get("rollout") or {}).get("id")
    believed = bool(rollout_id) and _believed_version(uri, annotations) is not None
    return believed and recorded is not None and recorded != rollout_id


def _same_change(rollout: Rollout | None, wanted: ModelVersion, rollout_id: str) -> bool:
    return (
        rollout is not None
        and rollout.phase in (Phase.PROGRESSING, Phase.ROLLED_BACK)
        and rollout.target.uri == wanted.uri
        and rollout.id == rollout_id
    )


def serving_uri(wanted: ModelVersion, rollout_id: str, status: Mapping[str, Any]) -> str:
    """The model the Deployment runs now: the spec's, except while a change of it is not
    yet recorded as started, or was rolled back: then the running one (status.model)."""
    running = running_model(status)
    if running is None or running.uri == wanted.uri:
        return wanted.uri
    rollout = Rollout.from_status(status)
    if _same_change(rollout, wanted, rollout_id) and rollout is not None:
        return wanted.uri if rollout.phase is Phase.PROGRESSING else running.uri
    return running.uri


def with_model_uri(ms: ModelServe, uri: str) -> ModelServe:
    """`ms` as the Deployment is built for it when it runs `uri` rather than its spec's."""
    if uri == ms.spec.model.uri:
        return ms
    model = ms.spec.model.model_copy(update={"uri": uri})
    return ms.model_copy(update={"spec": ms.spec.model_copy(update={"model": model})})


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the cluster shows of a server now."""

    desired: int  # the replicas wanted (0: asleep)
    deployment: DeploymentView | None
    pods: Sequence[PodView]
    now: float  # seconds since the epoch
    woken_at: float = 0.0  # status.activatedAt: when the autoscaler last woke it


@dataclasses.dataclass(frozen=True)
class Step:
    """status.model and status.rollout after this look, and what changed."""

    model: ModelVersion | None
    rollout: Rollout | None
    started: bool = False
    completed: bool = False
    rolled_back: bool = False
    superseded: bool = False

    def to_status(self) -> dict[str, Any]:
        """The two fields for the status (None deletes one in the merge patch)."""
        return {
            "model": self.model.to_status() if self.model else None,
            "rollout": self.rollout.to_status() if self.rollout else None,
        }


def rolled_out(observed: Observed, uri: str) -> bool:
    """Every wanted replica runs `uri` and is Ready, and nothing else runs."""
    deployment = observed.deployment
    if deployment is None or observed.desired < 1:
        return False
    live = [pod for pod in observed.pods if not pod.deleting]
    return (
        deployment.observed_generation >= deployment.generation
        and deployment.updated_replicas >= observed.desired
        and deployment.ready_replicas >= observed.desired
        and all(pod.model_uri == uri for pod in live)
        and sum(pod.ready for pod in live) >= observed.desired
    )


def _failure(observed: Observed, uri: str) -> tuple[str, str] | None:
    """Why a pod of the new model failed, if one did."""
    for pod in observed.pods:
        if pod.deleting or pod.model_uri != uri:
            continue
        if pod.fetch_failure:
            return FETCH_FAILED, f"pod {pod.name}: {pod.fetch_failure}"
        if pod.failure:
            return SERVER_FAILED, f"pod {pod.name}: {pod.failure}"
    return None


def step(
    wanted: ModelVersion,
    rollout_id: str,
    status: Mapping[str, Any],
    observed: Observed,
    *,
    deadline: float,
) -> Step:
    """The rollout fields after one look at the server (`status` as last written)."""
    running = running_model(status)
    rollout = Rollout.from_status(status)
    now = rfc3339(observed.now)
    if running is None:
        # The first model: nothing to go back to; recorded once it ran to the end.
        first = wanted if rolled_out(observed, wanted.uri) else None
        return Step(first, rollout)
    if running.uri == wanted.uri:
        if wanted.version and running.version != wanted.version:
            running = wanted  # the same files, now known by their registry id
        if rollout is not None and rollout.phase is Phase.PROGRESSING:
            rollout = dataclasses.replace(
                rollout,
                phase=Phase.SUPERSEDED,
                finished_at=now,
                message=f"spec.model.uri went back to {running} before the rollout ended",
            )
            return Step(running, rollout, superseded=True)
        return Step(running, rollout)
    started = False
    if not _same_change(rollout, wanted, rollout_id) or rollout is None:
        rollout = Rollout(rollout_id, running, wanted, Phase.PROGRESSING, started_at=now)
        started = True
    if rollout.phase is not Phase.PROGRESSING:
        return Step(running, rollout)  # rolled back: stays so until a new change
    failed = _failure(observed, wanted.uri)
    clock = max(epoch_seconds(rollout.started_at) or observed.now, observed.woken_at)
    if failed is None and observed.desired > 0 and observed.now - clock > deadline:
        failed = (
            DEADLINE_EXCEEDED,
            f"{wanted} was not Ready on every replica within {round(deadline)} s",
        )
    if failed is not None:
        reason, message = failed
        back = dataclasses.replace(
            rollout, phase=Phase.ROLLED_BACK, finished_at=now, reason=reason, message=message
        )
        return Step(running, back, started=started, rolled_back=True)
    if rolled_out(observed, wanted.uri):
        done = dataclasses.replace(rollout, phase=Phase.COMPLETE, finished_at=now)
        return Step(wanted, done, started=started, completed=True)
    return Step(running, rollout, started=started)


def refused(started: Step, message: str, now: float) -> Step:
    """A rollout that has just started to a model the store does not have as a recorded
    one (`ModelRefused`): put back at once, before any pod is replaced, rather than
    running nothing for the server."""
    rollout = started.rollout
    assert rollout is not None
    back = dataclasses.replace(
        rollout,
        phase=Phase.ROLLED_BACK,
        finished_at=rfc3339(now),
        reason=NOT_RECORDED,
        message=message,
    )
    return Step(started.model, back, rolled_back=True)
