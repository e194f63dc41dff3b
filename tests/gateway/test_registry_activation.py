"""The gateway's part of set-active rollouts, pure: which rollbacks it reports to the
registry, which servers follow a model name, and which hold requests during a swap."""

from __future__ import annotations

from typing import Any

from modelserve.common.rollouts import ModelVersion, Phase, Rollout
from modelserve.gateway.registry.activation import serves
from modelserve.gateway.registry.rollbacks import rollback_report
from modelserve.gateway.routing import Target, holdable
from modelserve.gateway.servers import RolloutView, server_status

OLD = ModelVersion("s3://inference-models/models/v1/m.gguf", "v1")
NEW = ModelVersion("s3://inference-models/models/v2/m.gguf", "v2")


def target(rollout: Rollout | None, phase: str = "Deploying", **kw: Any) -> Target:
    return Target(
        server_id="uid-1", namespace="ns", name="qwen", served_name="qwen", endpoint="",
        ready=True, phase=phase, message="", runtime=kw.get("runtime", "llamacpp"),
        rollout=rollout,
    )  # fmt: skip


def rolled_back(rollout_id: str = "42", target_version: str | None = "v2") -> Rollout:
    return Rollout(
        rollout_id, OLD, ModelVersion(NEW.uri, target_version), Phase.ROLLED_BACK,
        started_at="2027-01-15T08:00:00Z", finished_at="2027-01-15T08:01:00Z",
        reason="ServerFailed", message="pod p: server: CrashLoopBackOff",
    )  # fmt: skip


def test_a_rollback_of_a_registry_change_is_reported_with_both_versions() -> None:
    assert rollback_report(target(rolled_back())) == {
        "rollout_id": 42,
        "server": "ns/qwen",
        "server_uid": "uid-1",
        "failed_id": "v2",
        "restored_id": None,  # the registry's: where the set_active found the pointer
        "reason": "ServerFailed",
        "message": "the server runs v1 again: pod p: server: CrashLoopBackOff",
        # Whose: only the platform's and the set_active's actor's move the name back.
        "server_owner": None,
        "platform_server": False,
    }


def test_the_report_sent_keeps_whose_server_it_is() -> None:
    from modelserve.gateway.registry.client import RollbackReport

    report = rollback_report(target(rolled_back()))
    assert report is not None
    sent = RollbackReport(**{**report, "server_owner": "alice"}).model_dump()
    assert (sent["server_owner"], sent["platform_server"]) == ("alice", False)


def test_other_rollouts_are_not_reported() -> None:
    progressing = Rollout("42", OLD, NEW, Phase.PROGRESSING, started_at="2027-01-15T08:00:00Z")
    assert rollback_report(target(progressing)) is None
    assert rollback_report(target(None)) is None
    assert rollback_report(target(rolled_back(rollout_id=""))) is None  # made by kubectl
    assert rollback_report(target(rolled_back(rollout_id="abc"))) is None
    assert rollback_report(target(rolled_back(target_version=None))) is None


def test_a_server_being_swapped_holds_requests_and_a_failed_one_does_not() -> None:
    progressing = Rollout("42", OLD, NEW, Phase.PROGRESSING, started_at="2027-01-15T08:00:00Z")
    assert holdable(target(progressing))
    assert holdable(target(rolled_back(), phase="Deploying"))  # going back to the old one
    assert not holdable(target(rolled_back(), phase="Ready"))
    assert not holdable(target(progressing, phase="Failed"))
    assert not holdable(target(None))


def test_the_servers_of_a_name_are_those_serving_it_and_not_going() -> None:
    def item(served: str | None, deleting: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": "qwen-abc", "namespace": "ns", "uid": "u"}
        if deleting:
            meta["deletionTimestamp"] = "2027-01-15T08:00:00Z"
        model = {"uri": OLD.uri} | ({"servedName": served} if served else {})
        return {"metadata": meta, "spec": {"model": model}}

    assert serves(item("qwen"), "qwen")
    assert not serves(item("llama"), "qwen")
    assert serves(item(None), "qwen-abc")  # no served name: the object's name
    assert not serves(item("qwen", deleting=True), "qwen")


def test_status_shows_the_running_version_and_the_rollout() -> None:
    body = {
        "metadata": {
            "name": "qwen-abc", "namespace": "ns", "uid": "u",
            "annotations": {"llm.modelserve.io/model-version": "v2"},
        },
        "spec": {"runtime": "llamacpp", "model": {"uri": NEW.uri, "servedName": "qwen"}},
        "status": {"phase": "Ready", "model": OLD.to_status(),
                   "rollout": rolled_back().to_status()},
    }  # fmt: skip
    status = server_status(body, ingress_url=None)
    assert status.model_version == "v1"  # what runs, not what the spec names
    assert status.rollout == RolloutView.of(rolled_back())
    assert status.rollout is not None and status.rollout.reason == "ServerFailed"
    del body["status"]["model"]
    assert server_status(body, ingress_url=None).model_version == "v2"
