"""LeaderWorkerSet's real controller on the test bed: groups of pods spread over KWOK GPU
nodes by the real scheduler, labelled and given LWS's environment by its real webhooks."""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from modelserve.common.modelserve import GPU_RESOURCE
from modelserve.testbed.kube import GPU_TAINT_KEY, FakeNode, KubeCluster, start_cluster
from modelserve.testbed.lws import (
    GROUP_SIZE_ENV,
    LEADER_ADDRESS_ENV,
    LWS_GROUP,
    LWS_MODULE,
    WORKER_INDEX_ENV,
    RunningLWS,
    add_nodes,
    build_webhook_configurations,
    gpu_nodes,
    lws_manifests,
    start_lws,
)
from modelserve.testbed.polling import wait_for

# KWOK runs nothing: the image is never pulled.
IMAGE = "registry.k8s.io/pause:3.10"
NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"


@pytest.fixture(scope="module")
def lws_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A control plane of its own (the shared one keeps its three nodes), every pod left to
    KWOK; two 8-GPU nodes are added once it runs."""
    cpu = FakeNode("cpu-0", cpu="8", memory="16Gi")
    cluster = start_cluster(tmp_path_factory.mktemp("lws-kube"), nodes=(cpu,), run_pods=False)
    try:
        add_nodes(cluster, gpu_nodes(2))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def lws(lws_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLWS]:
    running = start_lws(tmp_path_factory.mktemp("lws"), lws_cluster)
    yield running
    running.stop(lws_cluster)


@pytest.fixture
def lws_namespace(lws_cluster: KubeCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50].strip("-")
    lws_cluster.kubectl("create", "namespace", name)
    yield name
    lws_cluster.kubectl("delete", "namespace", name, "--wait=false")


def pod_template(role: str, gpus: int) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"role": role}},
        "spec": {
            "containers": [
                {
                    "name": "server",
                    "image": IMAGE,
                    "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
                }
            ],
            "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def build_leader_worker_set(
    name: str, *, size: int, gpus: int, subdomain_policy: str = "Shared"
) -> dict[str, Any]:
    return {
        "apiVersion": f"{LWS_GROUP}/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "networkConfig": {"subdomainPolicy": subdomain_policy},
            "leaderWorkerTemplate": {
                "size": size,
                "leaderTemplate": pod_template("leader", gpus),
                "workerTemplate": pod_template("worker", gpus),
            },
        },
    }


def pods_of(cluster: KubeCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json(
        "pods", "-n", namespace, "-l", f"{NAME_LABEL}={name}"
    )["items"]
    return sorted(items, key=lambda pod: pod["metadata"]["name"])


def condition(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [c for c in pod.get("status", {}).get("conditions", []) if c["type"] == kind]
    return found[0] if found else {}


def ready(pod: dict[str, Any]) -> bool:
    return condition(pod, "Ready").get("status") == "True"


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}


def delete_and_wait_empty(cluster: KubeCluster, namespace: str, name: str) -> None:
    cluster.kubectl("delete", "leaderworkerset", name, "-n", namespace, "--wait=true")
    wait_for(
        lambda: not pods_of(cluster, namespace, name), timeout=120, what="the group's pods gone"
    )


def test_manager_is_a_tool_of_the_wrapper_at_v0_7_0() -> None:
    go_mod = (LWS_MODULE.path / "go.mod").read_text()
    assert "tool sigs.k8s.io/lws/cmd" in go_mod.splitlines()
    assert LWS_MODULE.version() == "v0.7.0"


def test_webhook_configurations_keep_pod_hooks_to_lws_pods() -> None:
    """As LWS's kustomize patches make them: pod webhooks only for pods with LWS's name
    label (they fail closed), every hook called by URL on loopback."""
    configurations = build_webhook_configurations(
        lws_manifests(), url="https://127.0.0.1:9443", ca_bundle=b"CA"
    )
    assert [c["metadata"]["name"] for c in configurations] == [
        "lws-mutating-webhook-configuration",
        "lws-validating-webhook-configuration",
    ]
    for configuration in configurations:
        for hook in configuration["webhooks"]:
            assert hook["clientConfig"] == {
                "url": "https://127.0.0.1:9443" + hook["clientConfig"]["url"][22:],
                "caBundle": "Q0E=",
            }
            if hook["rules"][0]["resources"] == ["pods"]:
                assert hook["objectSelector"] == {
                    "matchExpressions": [{"key": NAME_LABEL, "operator": "Exists"}]
                }
    paths = sorted(
        hook["clientConfig"]["url"][22:] for c in configurations for hook in c["webhooks"]
    )
    assert paths == [
        "/mutate--v1-pod",
        "/mutate-leaderworkerset-x-k8s-io-v1-leaderworkerset",
        "/validate--v1-pod",
        "/validate-leaderworkerset-x-k8s-io-v1-leaderworkerset",
    ]


def test_controller_is_healthy_with_its_webhooks_registered(
    lws: RunningLWS, lws_cluster: KubeCluster
) -> None:
    for endpoint in ("healthz", "readyz"):
        with urllib.request.urlopen(f"{lws.probe_url}/{endpoint}", timeout=5) as response:
            assert response.status == 200
    assert [kind for kind, _ in lws.webhook_configurations] == [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ]
    for kind, name in lws.webhook_configurations:
        hooks = lws_cluster.get_json(kind, name)["webhooks"]
        assert all(hook["clientConfig"]["url"].startswith(lws.webhook_url) for hook in hooks)
    # Metrics over TLS (self-signed), behind authentication: an anonymous scrape is refused.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"https://127.0.0.1:{lws.metrics_port}/metrics", context=context)
    assert refused.value.code in (401, 403)


@pytest.mark.parametrize(
    ("subdomain_policy", "subdomain"), [("Shared", "pair"), ("UniquePerReplica", "pair-0")]
)
def test_group_of_two_placed_on_two_gpu_nodes(
    lws: RunningLWS,
    lws_cluster: KubeCluster,
    lws_namespace: str,
    subdomain_policy: str,
    subdomain: str,
) -> None:
    """The leader's address names the headless Service of the group's subdomain: one for
    the whole set (Shared) or one per group (UniquePerReplica)."""
    name = "pair"
    manifest = build_leader_worker_set(name, size=2, gpus=8, subdomain_policy=subdomain_policy)
    lws_cluster.kubectl("apply", "-n", lws_namespace, stdin=json.dumps(manifest))
    wait_for(
        lambda: (
            len(pods := pods_of(lws_cluster, lws_namespace, name)) == 2
            and all(ready(pod) for pod in pods)
        ),
        timeout=90,
        what="the leader and its worker Ready",
    )
    leader, worker = pods_of(lws_cluster, lws_namespace, name)
    assert (leader["metadata"]["name"], worker["metadata"]["name"]) == ("pair-0", "pair-0-1")
    assert {leader["spec"]["nodeName"], worker["spec"]["nodeName"]} == {
        "gpu-h100-0",
        "gpu-h100-1",
    }
    leader_address = f"pair-0.{subdomain}.{lws_namespace}"
    assert env_of(leader) == {
        LEADER_ADDRESS_ENV: leader_address,
        GROUP_SIZE_ENV: "2",
        WORKER_INDEX_ENV: "0",
    }
    assert env_of(worker) == {
        LEADER_ADDRESS_ENV: leader_address,
        GROUP_SIZE_ENV: "2",
        WORKER_INDEX_ENV: "1",
    }
    # The leader's address resolves through the headless Service LWS makes for the group.
    service = lws_cluster.get_json("service", subdomain, "-n", lws_namespace)
    assert service["spec"]["clusterIP"] == "None"
    wait_for(
        lambda: (
            lws_cluster.get_json("leaderworkerset", name, "-n", lws_namespace)
            .get("status", {})
            .get("readyReplicas")
            == 1
        ),
        timeout=60,
        what="the LeaderWorkerSet counting its group Ready",
    )
    delete_and_wait_empty(lws_cluster, lws_namespace, name)


def test_group_that_does_not_fit_stays_pending_with_the_reason(
    lws: RunningLWS, lws_cluster: KubeCluster, lws_namespace: str
) -> None:
    name = "toobig"
    lws_cluster.kubectl(
        "apply",
        "-n",
        lws_namespace,
        stdin=json.dumps(build_leader_worker_set(name, size=2, gpus=16)),
    )

    def leader_unschedulable() -> bool:
        pods = pods_of(lws_cluster, lws_namespace, name)
        return bool(pods) and condition(pods[0], "PodScheduled").get("reason") == "Unschedulable"

    wait_for(leader_unschedulable, timeout=60, what="the scheduler to give up on the leader")
    pods = pods_of(lws_cluster, lws_namespace, name)
    leader = pods[0]
    assert leader["status"]["phase"] == "Pending"
    assert "Insufficient nvidia.com/gpu" in condition(leader, "PodScheduled")["message"]
    assert not any(ready(pod) or pod["spec"].get("nodeName") for pod in pods)
    status = lws_cluster.get_json("leaderworkerset", name, "-n", lws_namespace).get("status", {})
    assert status.get("readyReplicas", 0) == 0
    delete_and_wait_empty(lws_cluster, lws_namespace, name)
