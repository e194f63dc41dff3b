"""Set-active rollouts, pure: which model the Deployment runs, and how a change ends."""

from __future__ import annotations

from typing import Any

from modelserve.common.modelserve import ModelServe
from modelserve.common.rollouts import (
    MODEL_VERSION_ANNOTATION,
    ROLLOUT_ANNOTATION,
    ModelVersion,
    Phase,
    Rollout,
)
from modelserve.operator.rollouts.decisions import (
    DEADLINE_EXCEEDED,
    FETCH_FAILED,
    NOT_RECORDED,
    SERVER_FAILED,
    Observed,
    new_change,
    refused,
    requested,
    serving_uri,
    step,
    with_model_uri,
)
from modelserve.operator.status import DeploymentView, PodView

OLD = ModelVersion("s3://inference-models/models/qwen-1/qwen.gguf", "qwen-1")
NEW = ModelVersion("s3://inference-models/models/qwen-2/qwen.gguf", "qwen-2")
NOW = 1_800_000_000.0
DEADLINE = 600.0


def pod(uri: str, *, ready: bool = True, failure: str | None = None, **kw: Any) -> PodView:
    return PodView(
        name=f"p-{uri[-12:]}-{ready}", unschedulable=None, fetch_failure=kw.get("fetch"),
        failure=failure, deleting=kw.get("deleting", False), ready=ready, model_uri=uri,
    )  # fmt: skip


def deployment(ready: int, updated: int, replicas: int = 2) -> DeploymentView:
    return DeploymentView(3, 3, replicas, ready, updated, False)


def observed(pods: list[PodView], ready: int, updated: int, desired: int = 2) -> Observed:
    return Observed(desired, deployment(ready, updated), pods, NOW)


def status(rollout: Rollout | None = None, model: ModelVersion | None = OLD) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if model is not None:
        found["model"] = model.to_status()
    if rollout is not None:
        found["rollout"] = rollout.to_status()
    return found


def progressing(started: float = NOW - 10) -> Rollout:
    from modelserve.common.timestamps import rfc3339

    return Rollout("7", OLD, NEW, Phase.PROGRESSING, started_at=rfc3339(started))


def test_a_change_starts_a_rollout_and_the_deployment_waits_for_it_to_be_recorded() -> None:
    before = status()
    assert serving_uri(NEW, "7", before) == OLD.uri  # not recorded yet: the running model
    result = step(NEW, "7", before, observed([pod(OLD.uri), pod(OLD.uri)], 2, 2), deadline=DEADLINE)
    assert result.started and result.rollout is not None
    assert result.rollout.phase is Phase.PROGRESSING
    assert (result.rollout.source, result.rollout.target, result.rollout.id) == (OLD, NEW, "7")
    assert result.model == OLD
    assert serving_uri(NEW, "7", result.to_status()) == NEW.uri


def test_every_replica_on_the_new_model_and_ready_completes_it() -> None:
    halfway = observed([pod(OLD.uri), pod(NEW.uri)], 2, 1)
    assert not step(NEW, "7", status(progressing()), halfway, deadline=DEADLINE).completed
    not_ready = observed([pod(NEW.uri), pod(NEW.uri, ready=False)], 1, 2)
    assert not step(NEW, "7", status(progressing()), not_ready, deadline=DEADLINE).completed
    done = step(
        NEW, "7", status(progressing()), observed([pod(NEW.uri), pod(NEW.uri)], 2, 2),
        deadline=DEADLINE,
    )  # fmt: skip
    assert done.completed and done.model == NEW
    assert done.rollout is not None and done.rollout.phase is Phase.COMPLETE
    assert done.rollout.finished_at


def test_a_crashing_new_pod_rolls_back_and_the_deployment_goes_back_to_the_old_model() -> None:
    crashing = pod(NEW.uri, ready=False, failure="server: CrashLoopBackOff: back-off 10s")
    result = step(
        NEW, "7", status(progressing()), observed([pod(OLD.uri), crashing], 1, 1),
        deadline=DEADLINE,
    )  # fmt: skip
    assert result.rolled_back and result.rollout is not None
    assert (result.rollout.phase, result.rollout.reason) == (Phase.ROLLED_BACK, SERVER_FAILED)
    assert "CrashLoopBackOff" in result.rollout.message
    assert result.model == OLD
    assert serving_uri(NEW, "7", result.to_status()) == OLD.uri


def test_a_failed_fetch_rolls_back_with_its_reason() -> None:
    fetching = pod(NEW.uri, ready=False, fetch="fetch-model exited with code 1: digest mismatch")
    result = step(
        NEW, "7", status(progressing()), observed([pod(OLD.uri), fetching], 1, 1),
        deadline=DEADLINE,
    )  # fmt: skip
    assert result.rollout is not None and result.rollout.reason == FETCH_FAILED
    assert "digest mismatch" in result.rollout.message


def test_failures_of_old_or_deleted_pods_are_not_the_new_models() -> None:
    pods = [pod(OLD.uri, failure="server: CrashLoopBackOff"), pod(NEW.uri, ready=False)]
    pods.append(pod(NEW.uri, failure="server: CrashLoopBackOff", deleting=True))
    result = step(NEW, "7", status(progressing()), observed(pods, 0, 1), deadline=DEADLINE)
    assert not result.rolled_back


def test_the_deadline_rolls_back_but_only_while_replicas_are_wanted() -> None:
    slow = observed([pod(OLD.uri), pod(NEW.uri, ready=False)], 1, 1)
    late = progressing(started=NOW - DEADLINE - 1)
    result = step(NEW, "7", status(late), slow, deadline=DEADLINE)
    assert result.rollout is not None and result.rollout.reason == DEADLINE_EXCEEDED
    asleep = Observed(0, deployment(0, 0, replicas=0), [], NOW)
    waiting = step(NEW, "7", status(late), asleep, deadline=DEADLINE)
    assert not waiting.rolled_back and waiting.rollout is not None
    assert waiting.rollout.phase is Phase.PROGRESSING
    # Woken a moment ago: the deadline counts from the activation.
    woken = Observed(1, deployment(0, 1, replicas=1), [pod(NEW.uri, ready=False)], NOW, NOW - 5)
    assert not step(NEW, "7", status(late), woken, deadline=DEADLINE).rolled_back


def test_a_rolled_back_change_stays_so_until_a_new_change() -> None:
    back = Rollout("7", OLD, NEW, Phase.ROLLED_BACK, started_at="2027-01-15T08:00:00Z")
    seen = observed([pod(OLD.uri), pod(OLD.uri)], 2, 2)
    again = step(NEW, "7", status(back), seen, deadline=DEADLINE)
    assert not (again.started or again.rolled_back or again.completed)
    assert again.rollout == back and serving_uri(NEW, "7", status(back)) == OLD.uri
    retried = step(NEW, "8", status(back), seen, deadline=DEADLINE)  # set_active once more
    assert retried.started and retried.rollout is not None and retried.rollout.id == "8"


def test_going_back_to_the_running_model_supersedes_the_rollout() -> None:
    result = step(
        OLD, "9", status(progressing()), observed([pod(OLD.uri), pod(NEW.uri)], 2, 1),
        deadline=DEADLINE,
    )  # fmt: skip
    assert result.rollout is not None and result.rollout.phase is Phase.SUPERSEDED
    assert result.superseded and not result.rolled_back
    assert result.model == OLD and serving_uri(OLD, "9", result.to_status()) == OLD.uri


def test_a_model_the_store_does_not_have_is_put_back_before_any_pod_is_replaced() -> None:
    started = step(NEW, "7", status(), observed([pod(OLD.uri), pod(OLD.uri)], 2, 2),
                   deadline=DEADLINE)  # fmt: skip
    back = refused(started, "no object at s3://inference-models/models/qwen-2/", NOW)
    assert back.rolled_back and back.rollout is not None
    assert (back.rollout.phase, back.rollout.reason) == (Phase.ROLLED_BACK, NOT_RECORDED)
    assert serving_uri(NEW, "7", back.to_status()) == OLD.uri


def test_the_first_model_is_no_rollout_and_is_recorded_once_it_ran_to_the_end() -> None:
    starting = step(NEW, "", {}, observed([pod(NEW.uri, ready=False)], 0, 1), deadline=DEADLINE)
    assert starting.model is None and starting.rollout is None
    assert serving_uri(NEW, "", {}) == NEW.uri
    ready = step(NEW, "", {}, observed([pod(NEW.uri), pod(NEW.uri)], 2, 2), deadline=DEADLINE)
    assert ready.model == NEW and not ready.started


def test_the_annotations_name_the_version_and_the_change() -> None:
    ms = ModelServe.from_body(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "u"},
            "spec": {"runtime": "llamacpp", "model": {"uri": NEW.uri}},
        }
    )
    annotations = {
        "llm.modelserve.io/model-version": "qwen-2",
        "llm.modelserve.io/rollout-id": "7",
    }
    assert requested(ms, annotations) == (NEW, "7")
    assert requested(ms, {}) == (ModelVersion(NEW.uri), "")
    # Left behind by a uri changed by hand: they no longer describe the spec's model, so
    # the change is nobody's in the registry.
    stale = {**annotations, "llm.modelserve.io/model-version": "qwen-1"}
    assert requested(ms, stale) == (ModelVersion(NEW.uri), "")
    running = with_model_uri(ms, OLD.uri)
    assert running.spec.model.uri == OLD.uri and ms.spec.model.uri == NEW.uri
    assert with_model_uri(ms, NEW.uri) is ms


def test_a_new_change_id_for_the_same_model_is_a_new_change() -> None:
    """A set_active of the model a server was rolled back from patches only the change's
    id: the status is looked at again (and starts the rollout) when that id is one the
    status has not recorded, and the annotations describe the spec's uri."""
    uri = "s3://b/models/v3/m.gguf"

    def body(rollout_id: str, recorded: str | None, version: str = "v3") -> dict[str, Any]:
        annotations = {MODEL_VERSION_ANNOTATION: version, ROLLOUT_ANNOTATION: rollout_id}
        status = {"rollout": {"id": recorded, "phase": "RolledBack"}} if recorded else {}
        return {
            "metadata": {"annotations": annotations},
            "spec": {"model": {"uri": uri}},
            "status": status,
        }

    assert new_change(body("5", "3"))
    assert not new_change(body("3", "3"))  # recorded already
    assert not new_change(body("5", None))  # no rollout yet: the spec's own change
    assert not new_change(body("5", "3", version="v9"))  # annotations of another uri
