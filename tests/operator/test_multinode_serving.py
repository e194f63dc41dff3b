"""The operator serving models over several nodes, end to end: the real operator process
(with its own RBAC) applies a LeaderWorkerSet that LeaderWorkerSet's real controller and
webhooks turn into groups of pods, which the real scheduler places on KWOK GPU nodes.

A test bed of its own for this module (the session's cluster keeps no LWS and no 8-GPU
nodes, which other tests count on): every pod is KWOK's, so a group is Ready as soon as it
is placed, and what is checked is what the operator applies and reports, not vLLM or Ray.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from modelserve.common.modelserve import GPU_RESOURCE, GROUP, KIND, VERSION
from modelserve.testbed.kube import FakeNode, KubeCluster, start_cluster
from modelserve.testbed.lws import RunningLWS, add_nodes, gpu_nodes, start_lws
from modelserve.testbed.objectstores import PLATFORM_BUCKET, MinioServer
from modelserve.testbed.platform import (
    RunningOperator,
    install_crds,
    operator_kubeconfig,
    start_operator,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import record_config_only

pytestmark = [pytest.mark.kube, pytest.mark.minio]

T = TypeVar("T")

# Four 8-GPU nodes: room for two groups of two pods, one pod per node.
GPU_NODES = gpu_nodes(4)
GPU_NODE_NAMES = sorted(node.name for node in GPU_NODES)
# The weights of the servers here: their pods are KWOK's, one small file will do.
MODEL_URI = f"s3://{PLATFORM_BUCKET}/models/multinode-serving/"
NAME = "llama-405b"
# What LeaderWorkerSet labels each pod of a group with.
SET_LABEL = "leaderworkerset.sigs.k8s.io/name"
INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
REVISION_LABEL = "leaderworkerset.sigs.k8s.io/template-revision-hash"
LWS_RESOURCE = "leaderworkersets.leaderworkerset.x-k8s.io"
POLICY_RESOURCE = "networkpolicies.networking.k8s.io"
FENCE = f"{NAME}-group"
# Everything a ModelServe's children could leave in its namespace.
LEFTOVER_KINDS = ",".join(
    (
        LWS_RESOURCE,
        "statefulsets.apps",
        "deployments.apps",
        "pods",
        "services",
        "ingressroutes.traefik.io",
        POLICY_RESOURCE,
        "secrets",
    )
)


# --- The test bed ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bed_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this module's cluster, LWS and operator keep their files and logs."""
    return tmp_path_factory.mktemp("multinode-serving")


@pytest.fixture(scope="module")
def group_cluster(bed_folder: Path) -> Iterator[KubeCluster]:
    """A control plane of its own, every pod left to KWOK, with the ModelServe and Traefik
    CRDs and four 8-GPU nodes besides a CPU node."""
    cpu = FakeNode("cpu-0", cpu="8", memory="16Gi")
    cluster = start_cluster(bed_folder / "kube", nodes=(cpu,), run_pods=False)
    try:
        install_crds(cluster)
        add_nodes(cluster, GPU_NODES)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def lws(group_cluster: KubeCluster, bed_folder: Path) -> Iterator[RunningLWS]:
    running = start_lws(bed_folder / "lws", group_cluster)
    yield running
    running.stop(group_cluster)


@pytest.fixture(scope="module")
def group_model(platform_store: MinioServer) -> str:
    """MODEL_URI in the platform store as a download leaves it (tagged with its digest)."""
    record_config_only(platform_store, MODEL_URI, "multinode-serving")
    return MODEL_URI


@pytest.fixture(scope="module")
def group_operator(
    group_cluster: KubeCluster,
    lws: RunningLWS,
    platform_store: MinioServer,
    group_model: str,
    bed_folder: Path,
) -> Iterator[RunningOperator]:
    """`modelserve-operator` with its service account's credentials (operator/deploy/
    rbac.yaml), started once LWS's CRD is there, fencing groups in with NetworkPolicies as
    the chart's does; its log is bed_folder/logs/operator.log."""
    settings = {
        "OPERATOR_MODEL_STORE_ENDPOINT": group_cluster.expose_to_pods(platform_store.port),
        "OPERATOR_MODEL_STORE_ACCESS_KEY": platform_store.access_key,
        "OPERATOR_MODEL_STORE_SECRET_KEY": platform_store.secret_key,
        "OPERATOR_ROUTE_SERVICE": "modelserve-gateway@file",
        "OPERATOR_DRAIN_SECONDS": "2",
        "OPERATOR_GROUP_NETWORK_POLICY": "true",
    }
    running = start_operator(operator_kubeconfig(group_cluster), bed_folder / "logs", settings)
    yield running
    running.stop()


@pytest.fixture
def group_namespace(group_cluster: KubeCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of its own for one test; deleted afterwards, and its pods waited for, so
    that the next test finds every GPU free."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    group_cluster.kubectl("create", "namespace", name)
    # LeaderWorkerSet's StatefulSets make no pod before the namespace's default account.
    wait_for(
        lambda: group_cluster.kubectl(
            "get", "serviceaccount", "default", "-n", name, "--ignore-not-found", "-o", "name"
        ),
        timeout=30,
        what=f"the default service account of {name}",
    )
    yield name
    group_cluster.kubectl("delete", "namespace", name, "--wait=false")
    wait_for(
        lambda: not group_cluster.kubectl("get", "pods", "-n", name, "-o", "name"),
        timeout=120,
        what=f"the pods of namespace {name} gone",
    )


# --- What the tests read and write -------------------------------------------------------


def modelserve(name: str = NAME, **spec: Any) -> dict[str, Any]:
    """A vLLM ModelServe of two 8-GPU nodes per replica; `spec` replaces top-level fields."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "runtime": "vllm",
            "model": {"uri": MODEL_URI},
            "resources": {"gpus": 8, "nodes": 2},
            **spec,
        },
    }


def apply(cluster: KubeCluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(body))


def patch_spec(cluster: KubeCluster, namespace: str, name: str, **spec: Any) -> int:
    """Merge `spec` into the ModelServe's spec; its new generation."""
    cluster.kubectl(
        "patch", "ms", name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec})
    )
    generation: int = cluster.get_json("ms", name, "-n", namespace)["metadata"]["generation"]
    return generation


def group_pods(cluster: KubeCluster, namespace: str, name: str = NAME) -> list[dict[str, Any]]:
    """Every pod of the ModelServe's groups, terminating ones too, by name."""
    items: list[dict[str, Any]] = cluster.get_json(
        "pods", "-n", namespace, "-l", f"{SET_LABEL}={name}"
    )["items"]
    return sorted(items, key=lambda pod: pod["metadata"]["name"])


def pod_condition(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [c for c in pod.get("status", {}).get("conditions") or [] if c["type"] == kind]
    return found[0] if found else {}


def is_ready(pod: dict[str, Any]) -> bool:
    return pod_condition(pod, "Ready").get("status") == "True"


def names(pods: list[dict[str, Any]]) -> list[str]:
    return [pod["metadata"]["name"] for pod in pods]


def uids(pods: list[dict[str, Any]]) -> set[str]:
    return {pod["metadata"]["uid"] for pod in pods}


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """The status's conditions as type → (status, reason, message)."""
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}


def leader_endpoints(cluster: KubeCluster, namespace: str, name: str = NAME) -> list[str]:
    """The pods the ModelServe's Service sends to, from its EndpointSlices."""
    slices = cluster.get_json(
        "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={name}"
    )["items"]
    return sorted(
        endpoint["targetRef"]["name"]
        for found in slices
        for endpoint in found.get("endpoints") or []
        if "targetRef" in endpoint
    )


def wait_until(
    cluster: KubeCluster,
    namespace: str,
    probe: Callable[[], T | None],
    what: str,
    timeout: float = 90,
) -> T:
    """`wait_for`, which on a timeout says what the ModelServes and their children were."""
    try:
        return wait_for(probe, timeout=timeout, what=what)
    except TimeoutError as error:
        statuses = {
            item["metadata"]["name"]: item.get("status")
            for item in cluster.get_json("ms", "-n", namespace)["items"]
        }
        children = cluster.kubectl(
            "get", "-n", namespace, f"{LWS_RESOURCE},statefulsets,deployments,pods", "-o", "wide"
        )
        raise AssertionError(f"{error}\nstatuses: {json.dumps(statuses)}\n{children}") from error


def wait_ready(
    cluster: KubeCluster, namespace: str, groups: int, name: str = NAME
) -> dict[str, Any]:
    """Wait until the ModelServe reports `groups` replicas, all ready, for its current spec,
    and exactly that many whole groups of Ready pods exist; its status."""

    def ready() -> dict[str, Any] | None:
        found = cluster.get_json("ms", name, "-n", namespace)
        status: dict[str, Any] = found.get("status") or {}
        pods = group_pods(cluster, namespace, name)
        settled = (
            status.get("phase") == "Ready"
            and status.get("readyReplicas") == groups
            # After a scale-down, replicas counts the removed group for a moment after its
            # pods are gone, until the operator writes LeaderWorkerSet's next status.
            and status.get("replicas") == groups
            and status.get("observedGeneration") == found["metadata"]["generation"]
            and len(pods) == 2 * groups
            and all(is_ready(pod) and not pod["metadata"].get("deletionTimestamp") for pod in pods)
        )
        return status if settled else None

    return wait_until(cluster, namespace, ready, f"{name} Ready with {groups} groups")


# --- The tests ---------------------------------------------------------------------------


def test_a_group_is_placed_on_two_gpu_nodes_behind_a_leader_service(
    group_cluster: KubeCluster, group_operator: RunningOperator, group_namespace: str
) -> None:
    cluster, namespace = group_cluster, group_namespace
    apply(cluster, namespace, modelserve())
    status = wait_ready(cluster, namespace, groups=1)

    # Served, not refused: the operator no longer answers MultiNodeNotYetServed.
    assert status["phase"] == "Ready"
    assert status["message"] == "1/1 replicas ready"
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)
    assert conditions(status) == {
        "Scheduled": ("True", "Scheduled", ""),
        "ModelAvailable": ("True", "Fetched", ""),
        "Ready": ("True", "Ready", "1/1 replicas ready"),
    }

    owner = cluster.get_json("ms", NAME, "-n", namespace)
    leader_worker_set = cluster.get_json(LWS_RESOURCE, NAME, "-n", namespace)
    assert leader_worker_set["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    assert leader_worker_set["metadata"]["ownerReferences"] == [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": NAME,
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert leader_worker_set["spec"]["replicas"] == 1
    assert leader_worker_set["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert cluster.get_json("deployments", "-n", namespace)["items"] == []

    leader, worker = group_pods(cluster, namespace)
    assert names([leader, worker]) == [f"{NAME}-0", f"{NAME}-0-1"]
    assert (
        leader["metadata"]["labels"][INDEX_LABEL],
        worker["metadata"]["labels"][INDEX_LABEL],
    ) == (
        "0",
        "1",
    )
    nodes = [leader["spec"]["nodeName"], worker["spec"]["nodeName"]]
    assert len(set(nodes)) == 2
    assert set(nodes) <= set(GPU_NODE_NAMES)
    for pod in (leader, worker):
        (server,) = pod["spec"]["containers"]
        assert server["resources"]["limits"][GPU_RESOURCE] == "8"

    # The Service selects the leader, the one pod that serves HTTP, and only it.
    selector = cluster.get_json("service", NAME, "-n", namespace)["spec"]["selector"]
    assert selector.items() <= leader["metadata"]["labels"].items()
    assert not selector.items() <= worker["metadata"]["labels"].items()
    assert wait_until(
        cluster, namespace, lambda: leader_endpoints(cluster, namespace), "the leader endpoint"
    ) == [f"{NAME}-0"]


def _selects(selector: dict[str, Any], pod: dict[str, Any]) -> bool:
    assert set(selector) == {"matchLabels"}
    return bool(selector["matchLabels"].items() <= pod["metadata"]["labels"].items())


def test_a_group_is_fenced_in_by_its_own_network_policy_put_back_if_deleted(
    group_cluster: KubeCluster, group_operator: RunningOperator, group_namespace: str
) -> None:
    """The pods of a group accept every port from each other (Ray's head, NCCL) and from no
    other server's pods. The test bed's network enforces no policy: what is checked is the
    object the operator keeps, against the labels of the pods that really run."""
    cluster, namespace = group_cluster, group_namespace
    apply(cluster, namespace, modelserve())
    apply(cluster, namespace, modelserve("other"))
    wait_ready(cluster, namespace, groups=1)
    wait_ready(cluster, namespace, groups=1, name="other")

    policy = cluster.get_json(POLICY_RESOURCE, FENCE, "-n", namespace)
    owner = cluster.get_json("ms", NAME, "-n", namespace)
    (reference,) = policy["metadata"]["ownerReferences"]
    assert (reference["kind"], reference["uid"]) == (KIND, owner["metadata"]["uid"])
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert "ports" not in rule
    (peer,) = rule["from"]
    ours, theirs = group_pods(cluster, namespace), group_pods(cluster, namespace, "other")
    assert len(ours) == len(theirs) == 2
    for pod in ours:
        assert _selects(spec["podSelector"], pod) and _selects(peer["podSelector"], pod)
    for pod in theirs:
        assert not _selects(spec["podSelector"], pod) and not _selects(peer["podSelector"], pod)

    def put_back() -> dict[str, Any] | None:
        found = cluster.get_json(POLICY_RESOURCE, "-n", namespace)["items"]
        fences = [item for item in found if item["metadata"]["name"] == FENCE]
        return fences[0] if fences and fences[0]["metadata"]["uid"] != uid else None

    uid = policy["metadata"]["uid"]
    cluster.kubectl("delete", POLICY_RESOURCE, FENCE, "-n", namespace)
    again = wait_until(cluster, namespace, put_back, "the deleted NetworkPolicy put back")
    assert again["spec"] == spec


def test_scaling_adds_and_removes_whole_groups(
    group_cluster: KubeCluster, group_operator: RunningOperator, group_namespace: str
) -> None:
    cluster, namespace = group_cluster, group_namespace
    apply(cluster, namespace, modelserve())
    wait_ready(cluster, namespace, groups=1)
    first_group = uids(group_pods(cluster, namespace))

    patch_spec(cluster, namespace, NAME, replicas=2)
    status = wait_ready(cluster, namespace, groups=2)
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert status["message"] == "2/2 replicas ready"
    pods = group_pods(cluster, namespace)
    assert names(pods) == [f"{NAME}-0", f"{NAME}-0-1", f"{NAME}-1", f"{NAME}-1-1"]
    # Four pods of eight GPUs: one on each GPU node.
    assert sorted(pod["spec"]["nodeName"] for pod in pods) == GPU_NODE_NAMES
    assert first_group <= uids(pods)  # the first group kept running
    assert cluster.get_json(LWS_RESOURCE, NAME, "-n", namespace)["spec"]["replicas"] == 2

    def both_leaders() -> list[str] | None:
        found = leader_endpoints(cluster, namespace)
        return found if len(found) == 2 else None

    assert wait_until(cluster, namespace, both_leaders, "both leaders' endpoints") == [
        f"{NAME}-0",
        f"{NAME}-1",
    ]

    patch_spec(cluster, namespace, NAME, replicas=1)
    status = wait_ready(cluster, namespace, groups=1)
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)
    pods = group_pods(cluster, namespace)
    assert names(pods) == [f"{NAME}-0", f"{NAME}-0-1"]
    assert uids(pods) == first_group


def test_a_group_that_does_not_fit_stays_pending_with_the_reason(
    group_cluster: KubeCluster, group_operator: RunningOperator, group_namespace: str
) -> None:
    """Sixteen GPUs per node, on nodes of eight: the scheduler places no pod of the group,
    and the ModelServe says why."""
    cluster, namespace = group_cluster, group_namespace
    apply(cluster, namespace, modelserve(resources={"gpus": 16, "nodes": 2}))

    def pending() -> dict[str, Any] | None:
        status: dict[str, Any] = cluster.get_json("ms", NAME, "-n", namespace).get("status") or {}
        return status if "no node can take the pods" in status.get("message", "") else None

    status = wait_until(cluster, namespace, pending, "the ModelServe Pending, unschedulable")
    pods = group_pods(cluster, namespace)
    reasons = {pod_condition(pod, "PodScheduled").get("message") for pod in pods}

    assert status["phase"] == "Pending"
    assert status["readyReplicas"] == 0
    scheduled, _, reason = status["message"].partition("no node can take the pods: ")
    assert scheduled == "0/1 replicas ready: "
    assert reason in reasons
    # Five nodes: the CPU node and four of eight GPUs.
    assert reason.startswith("0/5 nodes are available: 5 Insufficient nvidia.com/gpu.")
    assert conditions(status)["Scheduled"] == ("False", "Unschedulable", reason)
    assert conditions(status)["Ready"] == ("False", "Pending", status["message"])
    # No part of the group runs: the leader is not placed, nor any worker made so far.
    assert pods
    assert names(pods)[0] == f"{NAME}-0"
    for pod in pods:
        assert pod["status"]["phase"] == "Pending"
        assert not pod["spec"].get("nodeName")
        assert not is_ready(pod)
    lws_status = cluster.get_json(LWS_RESOURCE, NAME, "-n", namespace).get("status") or {}
    assert lws_status.get("readyReplicas", 0) == 0


def test_a_spec_change_replaces_the_whole_group(
    group_cluster: KubeCluster, group_operator: RunningOperator, group_namespace: str
) -> None:
    """A new vLLM flag changes only the leader's command, yet the worker is replaced with it:
    a group is rolled as one, never a new leader with an old worker's Ray node."""
    cluster, namespace = group_cluster, group_namespace
    apply(cluster, namespace, modelserve())
    wait_ready(cluster, namespace, groups=1)
    before = group_pods(cluster, namespace)
    old_revision = before[0]["metadata"]["labels"][REVISION_LABEL]
    assert before[1]["metadata"]["labels"][REVISION_LABEL] == old_revision

    generation = patch_spec(cluster, namespace, NAME, args=["--max-model-len=8192"])

    def rolled() -> list[dict[str, Any]] | None:
        pods = group_pods(cluster, namespace)
        new = [pod for pod in pods if pod["metadata"]["uid"] not in uids(before)]
        return pods if len(new) == len(pods) == 2 else None

    wait_until(cluster, namespace, rolled, "both pods of the group replaced")
    status = wait_ready(cluster, namespace, groups=1)
    assert status["observedGeneration"] == generation
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)

    leader, worker = after = group_pods(cluster, namespace)
    assert names(after) == [f"{NAME}-0", f"{NAME}-0-1"]
    assert not uids(after) & uids(before)
    new_revision = leader["metadata"]["labels"][REVISION_LABEL]
    assert new_revision != old_revision
    assert worker["metadata"]["labels"][REVISION_LABEL] == new_revision
    (server,) = leader["spec"]["containers"]
    shell, flag, script, _, *words = server["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    assert script.endswith('exec "$@"')
    assert "--max-model-len=8192" in words
    (ray_node,) = worker["spec"]["containers"]
    assert "--max-model-len=8192" not in " ".join(ray_node["command"])


def test_a_group_s_service_name_held_by_another_server_is_said_not_lost(
    group_cluster: KubeCluster, group_operator: RunningOperator, group_namespace: str
) -> None:
    """LeaderWorkerSet names group 0's headless Service `<name>-0` and makes none when
    that name is taken: another ModelServe called `llama-405b-0` would leave the group's
    workers without their leader for good. The operator says so and runs nothing."""
    cluster, namespace = group_cluster, group_namespace
    apply(cluster, namespace, modelserve(f"{NAME}-0", resources={"gpus": 8}))
    wait_until(
        cluster,
        namespace,
        lambda: cluster.get_json("services", "-n", namespace)["items"] or None,
        "the other server's Service",
    )
    apply(cluster, namespace, modelserve())

    def failed() -> dict[str, Any] | None:
        status: dict[str, Any] = cluster.get_json("ms", NAME, "-n", namespace).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_until(cluster, namespace, failed, f"{NAME} Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NameTaken"
    assert f"Service {namespace}/{NAME}-0 exists" in ready["message"]
    assert cluster.get_json(LWS_RESOURCE, "-n", namespace)["items"] == []


def test_a_deleted_modelserve_leaves_nothing(
    group_cluster: KubeCluster, group_operator: RunningOperator, group_namespace: str
) -> None:
    cluster, namespace = group_cluster, group_namespace
    apply(cluster, namespace, modelserve())
    wait_ready(cluster, namespace, groups=1)

    def present() -> list[str]:
        return sorted(cluster.kubectl("get", LEFTOVER_KINDS, "-n", namespace, "-o", "name").split())

    assert present() == [
        f"ingressroute.traefik.io/{NAME}",
        f"leaderworkerset.leaderworkerset.x-k8s.io/{NAME}",
        f"networkpolicy.networking.k8s.io/{FENCE}",
        f"pod/{NAME}-0",
        f"pod/{NAME}-0-1",
        f"secret/{NAME}-model-store",
        f"service/{NAME}",
        f"service/{NAME}-0",
        f"statefulset.apps/{NAME}",
        f"statefulset.apps/{NAME}-0",
    ]

    cluster.kubectl("delete", "ms", NAME, "-n", namespace, "--wait=false")
    # The ModelServe's children go with it through the garbage collector of the test bed's
    # kube-controller-manager (owner references), their own children with them.
    remaining: list[str] = []

    def nothing_left() -> bool:
        remaining[:] = present()
        return not remaining

    try:
        wait_for(nothing_left, timeout=60, what=f"everything of {NAME} gone")
    except TimeoutError as error:
        raise AssertionError(f"{error}; left: {remaining}") from error
    assert cluster.get_json("ms", "-n", namespace)["items"] == []


def test_leaving_several_nodes_prunes_the_group_and_back_prunes_the_deployment(
    group_cluster: KubeCluster, group_operator: RunningOperator, group_namespace: str
) -> None:
    """spec.resources.nodes removed: the operator deletes the LeaderWorkerSet (and with it
    its StatefulSets and pods) and the group's NetworkPolicy, and runs a Deployment
    instead, behind the same Service, now selecting its pod; set again, the Deployment
    goes and a group (and its policy) comes back."""
    cluster, namespace = group_cluster, group_namespace
    apply(cluster, namespace, modelserve())
    wait_ready(cluster, namespace, groups=1)

    cluster.kubectl(
        "patch", "ms", NAME, "-n", namespace, "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/spec/resources/nodes"}]),
    )  # fmt: skip

    def one_pod_served() -> dict[str, Any] | None:
        found = cluster.get_json("ms", NAME, "-n", namespace)
        status: dict[str, Any] = found.get("status") or {}
        deployments = cluster.get_json("deployments", "-n", namespace)["items"]
        settled = (
            status.get("phase") == "Ready"
            and status.get("observedGeneration") == found["metadata"]["generation"]
            and [d["metadata"]["name"] for d in deployments] == [NAME]
            and not cluster.get_json(LWS_RESOURCE, "-n", namespace)["items"]
            and not cluster.get_json(POLICY_RESOURCE, "-n", namespace)["items"]
            and not group_pods(cluster, namespace)
        )
        return status if settled else None

    status = wait_until(cluster, namespace, one_pod_served, "one pod served, the group gone")
    assert status["message"] == "1/1 replicas ready"
    assert cluster.get_json("statefulsets", "-n", namespace)["items"] == []
    selector = cluster.get_json("service", NAME, "-n", namespace)["spec"]["selector"]
    assert INDEX_LABEL not in selector

    def deployment_endpoint() -> list[str] | None:
        found = leader_endpoints(cluster, namespace)
        return found if len(found) == 1 and found[0] not in group_names else None

    group_names = {f"{NAME}-0", f"{NAME}-0-1"}
    (served,) = wait_until(
        cluster, namespace, deployment_endpoint, "the Deployment's pod behind the Service"
    )
    assert served.startswith(f"{NAME}-")

    patch_spec(cluster, namespace, NAME, resources={"gpus": 8, "nodes": 2})
    wait_ready(cluster, namespace, groups=1)
    assert cluster.get_json(POLICY_RESOURCE, FENCE, "-n", namespace)["metadata"]["name"] == FENCE
    wait_until(
        cluster,
        namespace,
        lambda: not cluster.get_json("deployments", "-n", namespace)["items"] or None,
        "the Deployment gone",
    )
