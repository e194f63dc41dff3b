"""The builder's LeaderWorkerSet and leader Service against LeaderWorkerSet's real controller
and webhooks on the test bed (KWOK GPU nodes, pods never run): LWS accepts the object,
places a group on two GPU nodes, and the leader Service selects the leader only. The
operator does not apply these objects yet; this checks what it will apply."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from modelserve.common.modelserve import ModelServe
from modelserve.operator.multinode import build_leader_service, build_leader_worker_set
from modelserve.operator.settings import OperatorSettings
from modelserve.testbed.kube import FakeNode, KubeCluster, start_cluster
from modelserve.testbed.lws import RunningLWS, add_nodes, gpu_nodes, start_lws
from modelserve.testbed.polling import wait_for

# KWOK runs nothing: the image is never pulled.
SETTINGS = OperatorSettings(
    model_store_endpoint="minio.platform:9000",
    model_store_access_key="ak",  # type: ignore[arg-type]  # pydantic turns str into SecretStr
    model_store_secret_key="sk",  # type: ignore[arg-type]
    vllm_image="registry.k8s.io/pause:3.10",
    fetch_image="registry.k8s.io/pause:3.10",
)
NAME = "llama-405b"
SET_LABEL = "leaderworkerset.sigs.k8s.io/name"


@pytest.fixture(scope="module")
def group_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cpu = FakeNode("cpu-0", cpu="8", memory="16Gi")
    cluster = start_cluster(tmp_path_factory.mktemp("mn-kube"), nodes=(cpu,), run_pods=False)
    try:
        add_nodes(cluster, gpu_nodes(2))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def lws(
    group_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningLWS]:
    running = start_lws(tmp_path_factory.mktemp("mn-lws"), group_cluster)
    yield running
    running.stop(group_cluster)


def modelserve(namespace: str) -> ModelServe:
    return ModelServe.from_body(
        {
            "metadata": {"name": NAME, "namespace": namespace, "uid": "uid-1"},
            "spec": {
                "runtime": "vllm",
                "model": {"uri": "s3://models/llama-3.1-405b/"},
                "resources": {"gpus": 8, "nodes": 2},
            },
        }
    )


def without_owner(obj: dict[str, Any]) -> dict[str, Any]:
    """No ModelServe exists here: an owner reference to one would have the garbage
    collector delete the object."""
    obj["metadata"].pop("ownerReferences")
    return obj


def test_the_built_group_runs_on_two_gpu_nodes_behind_the_leader_service(
    lws: RunningLWS, group_cluster: KubeCluster
) -> None:
    namespace = "multinode"
    group_cluster.kubectl("create", "namespace", namespace)
    ms = modelserve(namespace)
    for obj in (build_leader_worker_set(ms, SETTINGS), build_leader_service(ms, SETTINGS)):
        group_cluster.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(without_owner(obj)))

    def ready_pods() -> list[dict[str, Any]] | None:
        pods: list[dict[str, Any]] = group_cluster.get_json(
            "pods", "-n", namespace, "-l", f"{SET_LABEL}={NAME}"
        )["items"]
        ready = [
            p
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
        ]
        return ready if len(ready) == 2 else None

    pods = sorted(
        wait_for(ready_pods, timeout=90, what="the group's two pods Ready"),
        key=lambda p: p["metadata"]["name"],
    )
    leader, worker = pods
    assert leader["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    assert leader["spec"]["nodeName"] != worker["spec"]["nodeName"]
    env = {e["name"]: e.get("value") for e in worker["spec"]["containers"][0]["env"]}
    assert env["LWS_LEADER_ADDRESS"] == f"{NAME}-0.{NAME}-0.{namespace}"
    assert env["LWS_GROUP_SIZE"] == "2"
    assert worker["spec"]["containers"][0]["command"][2] == "--address=$(LWS_LEADER_ADDRESS):6379"

    def leader_endpoints() -> list[str] | None:
        slices = group_cluster.get_json(
            "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={NAME}"
        )["items"]
        names = [
            e["targetRef"]["name"]
            for s in slices
            for e in s.get("endpoints") or []
            if "targetRef" in e
        ]
        return names or None

    assert wait_for(leader_endpoints, timeout=60, what="the leader Service's endpoints") == [
        leader["metadata"]["name"]
    ]

    def ready_groups() -> int | None:
        # LWS writes its status a moment after the pods turn Ready.
        status = group_cluster.get_json("leaderworkerset", NAME, "-n", namespace).get("status")
        ready: int | None = (status or {}).get("readyReplicas")
        return ready

    assert wait_for(ready_groups, timeout=60, what="the LeaderWorkerSet's readyReplicas") == 1
