"""Status: computed from what the Deployment and pods report, never guessed."""

from __future__ import annotations

import dataclasses
from typing import Any

from modelserve.common.modelserve import ModelServe
from modelserve.operator.settings import OperatorSettings
from modelserve.operator.status import (
    DeploymentView,
    PodView,
    ProbeResult,
    Refusal,
    compute_status,
)

SETTINGS = OperatorSettings()
MS = ModelServe.from_body(
    {
        "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 2},
        "spec": {"runtime": "llamacpp", "model": {"uri": "s3://b/m.gguf"}, "replicas": 2},
    }
)


def deployment(ready: int, updated: int = 2, generation: int = 1, observed: int = 1) -> Any:
    return DeploymentView(generation, observed, 2, ready, updated, False)


def pod(**status: Any) -> PodView:
    return PodView.from_body({"metadata": {"name": "p"}, "status": status})


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_all_replicas_ready_is_ready() -> None:
    status = compute_status(MS, SETTINGS, deployment=deployment(2), pods=[])
    assert (status["phase"], status["readyReplicas"], status["message"]) == (
        "Ready",
        2,
        "2/2 replicas ready",
    )
    assert conditions(status)["Ready"] == ("True", "Ready")
    assert status["observedGeneration"] == 2
    assert status["selector"] == "llm.modelserve.io/modelserve=m"


def test_unschedulable_pods_give_pending_with_the_schedulers_message() -> None:
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    unschedulable = pod(
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
            }
        ]
    )
    status = compute_status(MS, SETTINGS, deployment=deployment(0), pods=[unschedulable])
    assert status["phase"] == "Pending"
    assert message in status["message"]
    assert conditions(status)["Scheduled"] == ("False", "Unschedulable")


def test_a_failed_model_fetch_fails_with_the_reason() -> None:
    failed = pod(
        initContainerStatuses=[
            {
                "name": "fetch-model",
                "state": {
                    "terminated": {
                        "exitCode": 1,
                        "message": "cannot fetch s3://b/m.gguf: NoSuchKey",
                    }
                },
            }
        ]
    )
    status = compute_status(MS, SETTINGS, deployment=deployment(0), pods=[failed])
    assert status["phase"] == "Failed"
    assert "NoSuchKey" in status["message"]
    assert conditions(status)["ModelAvailable"] == ("False", "FetchFailed")


def test_crash_looping_server_next_to_a_ready_one_is_degraded() -> None:
    crashing = pod(
        containerStatuses=[
            {
                "name": "server",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
            }
        ]
    )
    status = compute_status(MS, SETTINGS, deployment=deployment(1), pods=[crashing])
    assert status["phase"] == "Degraded"
    assert "CrashLoopBackOff" in status["message"]


def test_rollout_in_progress_is_deploying() -> None:
    status = compute_status(MS, SETTINGS, deployment=deployment(1, updated=1), pods=[])
    assert (status["phase"], status["message"]) == ("Deploying", "1/2 replicas ready: rolling out")
    status = compute_status(MS, SETTINGS, deployment=deployment(2, generation=2), pods=[])
    assert status["phase"] == "Deploying"  # the Deployment has not seen its new spec yet


def test_a_workload_not_yet_applied_for_the_spec_does_not_speak_for_it() -> None:
    """MS is at generation 2; the Deployment the watch shows was applied for 1: the status
    (and every condition) is what generation 1 came to, so `kubectl wait
    --for=condition=Ready` on generation 2 keeps waiting."""
    older = dataclasses.replace(deployment(2), applied_for=1)
    status = compute_status(MS, SETTINGS, deployment=older, pods=[])
    assert status["phase"] == "Ready"
    assert status["observedGeneration"] == 1
    assert {c["observedGeneration"] for c in status["conditions"]} == {1}
    current = dataclasses.replace(deployment(2), applied_for=2)
    assert compute_status(MS, SETTINGS, deployment=current, pods=[])["observedGeneration"] == 2


def test_a_started_rollout_is_deploying_until_the_workload_runs_its_model() -> None:
    """Every pod of the old model is Ready, and the rollout to the new one has started: the
    Deployment still fetches the old model, so the server is not rolled out."""
    old = dataclasses.replace(deployment(2), model_uri="s3://b/old.gguf")
    status = compute_status(MS, SETTINGS, deployment=old, pods=[], serving_uri="s3://b/m.gguf")
    assert (status["phase"], conditions(status)["Ready"]) == ("Deploying", ("False", "Deploying"))
    new = dataclasses.replace(deployment(2), model_uri="s3://b/m.gguf")
    status = compute_status(MS, SETTINGS, deployment=new, pods=[], serving_uri="s3://b/m.gguf")
    assert status["phase"] == "Ready"


def test_no_deployment_yet_is_pending() -> None:
    assert compute_status(MS, SETTINGS, deployment=None, pods=[])["phase"] == "Pending"


def test_transition_time_stays_while_the_condition_holds() -> None:
    first = compute_status(MS, SETTINGS, deployment=deployment(2), pods=[])
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    ready["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    again = compute_status(MS, SETTINGS, deployment=deployment(2), pods=[], previous=first)
    kept = next(c for c in again["conditions"] if c["type"] == "Ready")
    assert kept["lastTransitionTime"] == "2020-01-01T00:00:00Z"


def test_external_status_follows_the_probe() -> None:
    ms = ModelServe.from_body(
        {
            "metadata": {"name": "x", "namespace": "ns", "uid": "u"},
            "spec": {"runtime": "external", "external": {"url": "http://h/v1"}},
        }
    )
    pending = compute_status(ms, SETTINGS, deployment=None, pods=[])
    assert pending["phase"] == "Pending"
    down = compute_status(
        ms,
        SETTINGS,
        deployment=None,
        pods=[],
        probe=ProbeResult(False, "http://h/v1 is unreachable"),
    )
    assert (down["phase"], conditions(down)["Ready"]) == ("Degraded", ("False", "ProbeFailed"))
    up = compute_status(ms, SETTINGS, deployment=None, pods=[], probe=ProbeResult(True, "ok"))
    assert (up["phase"], up["readyReplicas"], up["endpoint"]) == ("Ready", 1, "http://h/v1")
    assert next(c for c in pending["conditions"] if c["type"] == "Ready")["message"] == (
        "waiting for the first probe"
    )


def test_a_server_turned_external_drops_its_workload_fields() -> None:
    ms = ModelServe.from_body(
        {
            "metadata": {"name": "x", "namespace": "ns", "uid": "u"},
            "spec": {"runtime": "external", "external": {"url": "http://h/v1"}},
        }
    )
    before = {"desiredReplicas": 2, "model": {"uri": "s3://b/m.gguf"}, "rollout": {"id": "r"}}
    status = compute_status(ms, SETTINGS, deployment=None, pods=[], previous=before)
    # A merge patch: None deletes them.
    assert {field: status[field] for field in before} == dict.fromkeys(before)


def test_a_refused_modelserve_is_failed_with_the_reason() -> None:
    refusal = Refusal("ModelAvailable", "NotRecorded", "m.gguf is not a recorded download")
    status = compute_status(MS, SETTINGS, deployment=None, pods=[], refusal=refusal)
    assert (status["phase"], status["message"]) == ("Failed", refusal.message)
    assert conditions(status) == {
        "ModelAvailable": ("False", "NotRecorded"),
        "Ready": ("False", "NotRecorded"),
    }


def test_an_init_step_backing_off_reports_why_its_last_try_failed() -> None:
    backing_off = pod(
        initContainerStatuses=[
            {
                "name": "fetch-model",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
                "lastState": {
                    "terminated": {"exitCode": 1, "message": "fetch-model: refusing m.gguf"}
                },
            }
        ]
    )
    status = compute_status(MS, SETTINGS, deployment=deployment(0), pods=[backing_off])
    assert status["phase"] == "Failed"
    assert status["message"].endswith(
        "fetch-model exited with code 1: fetch-model: refusing m.gguf"
    )
    assert conditions(status)["ModelAvailable"] == ("False", "FetchFailed")


def test_ready_replicas_without_their_route_are_deploying_not_ready() -> None:
    missing = ["IngressRoute m", "Service m"]
    status = compute_status(MS, SETTINGS, deployment=deployment(2), pods=[], missing=missing)
    assert (status["phase"], status["readyReplicas"]) == ("Deploying", 2)
    assert status["message"] == "2/2 replicas ready: creating the IngressRoute m, Service m"
    assert conditions(status)["Ready"] == ("False", "Deploying")
    # What is missing matters only to a server that would otherwise be Ready.
    starting = compute_status(MS, SETTINGS, deployment=deployment(0), pods=[], missing=missing)
    assert starting["message"] == "0/2 replicas ready: starting"
