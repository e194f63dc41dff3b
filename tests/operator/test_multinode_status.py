"""How the operator runs and reports a model over several nodes, without a cluster: its
children (a LeaderWorkerSet, not a Deployment), its status read from LeaderWorkerSet's
(groups, not pods), and which leaders a scale-down fences."""

from __future__ import annotations

from typing import Any

from modelserve.common.modelserve import ModelServe
from modelserve.operator.children import build_children, build_workload, wanted_children
from modelserve.operator.multinode import leaders_to_drain
from modelserve.operator.settings import OperatorSettings
from modelserve.operator.status import DeploymentView, PodView, compute_status

SETTINGS = OperatorSettings(
    model_store_endpoint="minio.platform:9000",
    model_store_access_key="ak",  # type: ignore[arg-type]  # pydantic turns str into SecretStr
    model_store_secret_key="sk",  # type: ignore[arg-type]
)
URI = "s3://models/llama-3.1-405b-instruct/"


def modelserve(nodes: int | None = 2, replicas: int = 2) -> ModelServe:
    resources: dict[str, Any] = {"gpus": 8}
    if nodes:
        resources["nodes"] = nodes
    return ModelServe.from_body(
        {
            "metadata": {"name": "big", "namespace": "team-a", "uid": "u1", "generation": 3},
            "spec": {
                "runtime": "vllm",
                "model": {"uri": URI},
                "resources": resources,
                "replicas": replicas,
            },
        }
    )


def group_set(status: dict[str, Any], generation: int = 3) -> DeploymentView:
    body = build_workload(modelserve(), SETTINGS)
    body["metadata"]["generation"] = generation
    body["status"] = status
    return DeploymentView.from_body(body)


def pod(name: str, *, group: str | None, worker: str | None, ready: bool = True) -> PodView:
    labels = {"llm.modelserve.io/modelserve": "big"}
    if group is not None:
        labels["leaderworkerset.sigs.k8s.io/group-index"] = group
    if worker is not None:
        labels["leaderworkerset.sigs.k8s.io/worker-index"] = worker
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return PodView.from_body(
        {"metadata": {"name": name, "labels": labels}, "status": {"conditions": [condition]}}
    )


def test_a_model_over_several_nodes_gets_a_leaderworkerset_and_no_deployment() -> None:
    kinds = [(c["kind"], c["metadata"]["name"]) for c in build_children(modelserve(), SETTINGS)]
    assert kinds == [("LeaderWorkerSet", "big"), ("Service", "big"), ("IngressRoute", "big")]
    assert wanted_children(modelserve(), SETTINGS) == {
        ("LeaderWorkerSet", "big"),
        ("Service", "big"),
        ("IngressRoute", "big"),
        ("Secret", "big-model-store"),
    }
    service = build_children(modelserve(), SETTINGS)[1]
    assert service["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    one_node = [c["kind"] for c in build_children(modelserve(nodes=None), SETTINGS)]
    assert one_node == ["Deployment", "Service", "IngressRoute"]


def test_replicas_given_to_the_workload_are_groups() -> None:
    assert build_workload(modelserve(), SETTINGS, replicas=5)["spec"]["replicas"] == 5
    assert build_workload(modelserve(), SETTINGS)["spec"]["replicas"] == 2


def test_the_view_of_a_leaderworkerset_counts_groups_and_its_model() -> None:
    view = group_set({"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2})
    assert (view.replicas, view.ready_replicas, view.updated_replicas) == (2, 1, 2)
    assert view.model_uri == URI
    assert view.generation == view.observed_generation == 3
    assert not view.update_in_progress and not view.progress_deadline_exceeded


def test_ready_only_when_every_group_is_ready_and_rolled_out() -> None:
    ms = modelserve()
    pods = [pod(f"big-{i}", group=str(i // 2), worker=str(i % 2)) for i in range(4)]

    def phase(status: dict[str, Any]) -> tuple[str, str]:
        found = compute_status(ms, SETTINGS, deployment=group_set(status), pods=pods)
        return found["phase"], found["message"]

    ready = {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}
    assert phase(ready) == ("Ready", "2/2 replicas ready")
    # One group's worker not Ready: LeaderWorkerSet counts that group as not ready.
    assert phase({**ready, "readyReplicas": 1})[0] == "Deploying"
    # LeaderWorkerSet counts a group whose worker exists but is not Ready as ready; the
    # operator does not: that group's vLLM cannot serve.
    pods[3] = pod("big-3", group="1", worker="1", ready=False)
    assert phase(ready) == ("Deploying", "1/2 replicas ready: rolling out")
    found = compute_status(ms, SETTINGS, deployment=group_set(ready), pods=pods)
    assert found["readyReplicas"] == 1
    del pods[3]  # a group short of a pod is not ready either
    assert phase(ready)[1] == "1/2 replicas ready: rolling out"
    pods.append(pod("big-3", group="1", worker="1"))
    rolling = {
        **ready,
        "conditions": [{"type": "UpdateInProgress", "status": "True"}],
    }
    assert phase(rolling) == ("Deploying", "2/2 replicas ready: rolling out")


def test_before_the_leaderworkerset_exists_the_status_names_it() -> None:
    status = compute_status(modelserve(), SETTINGS, deployment=None, pods=[])
    assert (status["phase"], status["message"]) == ("Pending", "creating the LeaderWorkerSet")


def test_a_group_that_cannot_be_placed_is_pending_with_the_schedulers_reason() -> None:
    reason = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    body = {
        "metadata": {"name": "big-0", "labels": {}},
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": reason}
            ]
        },
    }  # fmt: skip
    status = compute_status(
        modelserve(replicas=1),
        SETTINGS,
        deployment=group_set({"replicas": 1}),
        pods=[PodView.from_body(body)],
    )
    assert status["phase"] == "Pending"
    assert status["message"] == f"0/1 replicas ready: no node can take the pods: {reason}"
    scheduled = next(c for c in status["conditions"] if c["type"] == "Scheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")


def test_only_leaders_know_their_group() -> None:
    assert pod("a", group="3", worker="0").leader_of == 3
    assert pod("b", group="3", worker="1").leader_of is None
    assert pod("c", group=None, worker=None).leader_of is None


def test_a_scale_down_fences_the_leaders_of_the_highest_groups() -> None:
    pods = [pod(f"big-{g}-{w}", group=str(g), worker=str(w)) for g in range(4) for w in range(2)]
    # LeaderWorkerSet keeps groups 0 and 1 when it goes from 4 to 2.
    assert leaders_to_drain(pods, keep=2) == ("big-3-0", "big-2-0")
    assert leaders_to_drain(pods, keep=4) is None
    # A leader that goes and is not Ready takes no request: no fence is built.
    unready = [*pods[:6], pod("big-3-0", group="3", worker="0", ready=False)]
    assert leaders_to_drain(unready, keep=2) is None
