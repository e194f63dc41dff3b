"""Dynamic loading against the real control plane: the operator reads load reports from
Leases written here by hand (as the gateway replicas write them), puts an idle model to
sleep through the drain fence, wakes it on a held request, and evicts for GPUs.

vLLM pods are KWOK's. Each GPU test makes a KWOK node of its own with a GPU product no
other test names, so nothing else takes its GPUs."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
import yaml

from modelserve.common.load_reports import LoadReport, ServerLoad, build_lease, lease_name
from modelserve.testbed.kube import FakeNode, KubeCluster, build_node
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningOperator, operator_kubeconfig, start_operator
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import tag_as_recorded
from modelserve.testbed.testing_operator import apply, get, manifest, wait_phase

pytestmark = [pytest.mark.kube, pytest.mark.minio]


@pytest.fixture(scope="module")
def gateway_namespace(crds: KubeCluster) -> Iterator[str]:
    name = f"gw-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def autoscaling_operator(
    crds: KubeCluster, testbed_dir: Path, platform_store: MinioServer, gateway_namespace: str
) -> Iterator[RunningOperator]:
    """An operator that reads the load reports of `gateway_namespace`, with a long time to
    acknowledge drains (the test acknowledges them by hand)."""
    uri = manifest("vllm-1gpu.yaml")["spec"]["model"]["uri"]
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    client = platform_store.client()
    client.put_object(bucket, f"{prefix}config.json", io.BytesIO(b"{}"), 2)
    tag_as_recorded(client, bucket, f"{prefix}config.json", hashlib.sha256(b"{}").hexdigest(), "x")
    running = start_operator(
        operator_kubeconfig(crds),
        testbed_dir / "logs" / "autoscaling",
        {
            "OPERATOR_MODEL_STORE_ENDPOINT": crds.expose_to_pods(platform_store.port),
            "OPERATOR_MODEL_STORE_ACCESS_KEY": platform_store.access_key,
            "OPERATOR_MODEL_STORE_SECRET_KEY": platform_store.secret_key,
            "OPERATOR_ROUTE_SERVICE": "modelserve-gateway@file",
            "OPERATOR_DRAIN_SECONDS": "1",
            "OPERATOR_GATEWAY_NAMESPACE": gateway_namespace,
            "OPERATOR_DRAIN_ACK_SECONDS": "120",
            "OPERATOR_AUTOSCALE_INTERVAL": "0.2",
        },
    )
    yield running
    running.stop()


@pytest.fixture
def gpu_type(crds: KubeCluster) -> Iterator[str]:
    """A KWOK node with one GPU of a product of its own."""
    product = f"TEST-GPU-{uuid.uuid4().hex[:6].upper()}"
    node = FakeNode(f"gpu-{product.lower()}", cpu="16", memory="64Gi", gpus=1, gpu_product=product)
    crds.kubectl("apply", stdin=yaml.safe_dump(build_node(node)))
    yield product
    crds.kubectl("delete", "node", node.name, "--wait=false")


class Gateway:
    """One gateway replica's load report, written by hand."""

    def __init__(self, kube: KubeCluster, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.replica = f"hand-{uuid.uuid4().hex[:6]}"

    def report(
        self, servers: dict[str, ServerLoad] | None = None, draining: dict[str, str] | None = None
    ) -> None:
        lease = build_lease(
            LoadReport(self.replica, time.time(), 300, servers or {}, draining or {}),
            self.namespace,
        )
        self.kube.kubectl("apply", stdin=yaml.safe_dump(lease))

    def leave(self) -> None:
        lease = f"lease/{lease_name(self.replica)}"
        self.kube.kubectl("delete", "-n", self.namespace, lease, "--ignore-not-found")


@pytest.fixture
def gateway(crds: KubeCluster, gateway_namespace: str) -> Iterator[Gateway]:
    found = Gateway(crds, gateway_namespace)
    yield found
    found.leave()


def model(name: str, gpu_type: str, **autoscaling: Any) -> dict[str, Any]:
    body = manifest("vllm-1gpu.yaml")
    body["metadata"]["name"] = name
    body["spec"]["resources"] = {"gpus": 1, "gpuType": gpu_type}
    body["spec"]["autoscaling"] = {"minReplicas": 0, "maxReplicas": 1, **autoscaling}
    return body


def status(kube: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = get(kube, namespace, "ms", name).get("status") or {}
    return found


def replicas(kube: KubeCluster, namespace: str, name: str) -> int:
    return int(get(kube, namespace, "deployment", name)["spec"]["replicas"])


def events(kube: KubeCluster, namespace: str, name: str) -> dict[str, str]:
    found = get(kube, namespace, "events", "--field-selector", f"involvedObject.name={name}")
    return {event["reason"]: event["message"] for event in found["items"]}


def drain_token(kube: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: status(kube, namespace, name).get("drain"),
        timeout=90,
        what=f"a drain of {name}",
    )


def metrics(operator: RunningOperator) -> str:
    with urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5) as answer:
        text: str = answer.read().decode()
    return text


def test_an_idle_model_sleeps_once_the_gateway_agrees_and_a_held_request_wakes_it(
    crds: KubeCluster,
    namespace: str,
    autoscaling_operator: RunningOperator,
    gateway: Gateway,
    gpu_type: str,
) -> None:
    gateway.report()  # a live replica with no request: the drain waits for its word
    name = apply(crds, namespace, model("sleepy", gpu_type, idleTimeoutSeconds=10))
    ready = wait_phase(crds, namespace, name, "Ready")
    assert ready["desiredReplicas"] == 1
    assert "activatedAt" in ready
    uid = ready["serverId"]

    drain = drain_token(crds, namespace, name)
    assert drain["reason"] == "Idle"
    assert replicas(crds, namespace, name) == 1  # not before every gateway agreed
    gateway.report(draining={uid: drain["token"]})
    asleep = wait_phase(crds, namespace, name, "Sleeping")
    assert asleep["desiredReplicas"] == 0
    assert "drain" not in asleep
    assert "idle for" in asleep["message"]
    assert replicas(crds, namespace, name) == 0

    gateway.report(servers={uid: ServerLoad(held=1, last_used=time.time())})
    wait_for(lambda: replicas(crds, namespace, name) == 1, timeout=30, what="the wake-up")
    woken = wait_phase(crds, namespace, name, "Ready")
    assert woken["desiredReplicas"] == 1
    assert "Activated" in events(crds, namespace, name)
    wait_for(
        lambda: status(crds, namespace, name).get("lastRequestTime"),
        timeout=30,
        what="lastRequestTime",
    )
    text = metrics(autoscaling_operator)
    assert (
        f'modelserve_operator_activations_total{{name="{name}",namespace="{namespace}"}} 1.0'
        in text
    )
    assert 'modelserve_operator_sleeps_total{reason="idle"}' in text


def test_a_request_for_a_sleeping_model_evicts_the_idle_one_on_its_gpus(
    crds: KubeCluster,
    namespace: str,
    autoscaling_operator: RunningOperator,
    gateway: Gateway,
    gpu_type: str,
) -> None:
    gateway.report()
    first = apply(crds, namespace, model("first", gpu_type, minResidenceSeconds=0))
    first_uid = wait_phase(crds, namespace, first, "Ready")["serverId"]
    second_body = model("second", gpu_type)
    second_body["spec"]["replicas"] = 0  # starts asleep
    second = apply(crds, namespace, second_body)
    second_uid = wait_phase(crds, namespace, second, "Sleeping")["serverId"]

    held = {second_uid: ServerLoad(held=1, last_used=time.time())}
    gateway.report(servers=held)
    drain = drain_token(crds, namespace, first)
    assert drain["reason"] == "Evicted"
    # Both in one namespace: named by name (a model of another would not be named).
    assert drain["message"] == f"evicted to make room for {second}"
    waiting = next(
        c for c in status(crds, namespace, second)["conditions"] if c["type"] == "Scheduled"
    )
    assert waiting["reason"] == "WaitingForEviction"
    gateway.report(servers=held, draining={first_uid: drain["token"]})

    asleep = wait_phase(crds, namespace, first, "Sleeping")
    assert f"evicted to make room for {second}" in asleep["message"]
    wait_phase(crds, namespace, second, "Ready")
    assert events(crds, namespace, first)["Evicted"] == f"evicted to make room for {second}"
    for_this = events(crds, namespace, second)["EvictedForThis"]
    assert for_this == f"{first} was put to sleep to free its GPUs"
    assert 'modelserve_operator_evictions_total{reason="lru"}' in metrics(autoscaling_operator)


def test_a_pinned_model_is_never_evicted_and_the_waiting_one_is_told_why(
    crds: KubeCluster,
    namespace: str,
    autoscaling_operator: RunningOperator,
    gateway: Gateway,
    gpu_type: str,
) -> None:
    pinned = apply(crds, namespace, model("pinned", gpu_type, pinned=True, minResidenceSeconds=0))
    wait_phase(crds, namespace, pinned, "Ready")
    other_body = model("other", gpu_type)
    other_body["spec"]["replicas"] = 0
    other = apply(crds, namespace, other_body)
    other_uid = wait_phase(crds, namespace, other, "Sleeping")["serverId"]

    gateway.report(servers={other_uid: ServerLoad(held=1, last_used=time.time())})

    def refused() -> dict[str, Any] | None:
        conditions = status(crds, namespace, other).get("conditions") or []
        found = next((c for c in conditions if c["type"] == "Scheduled"), None)
        return found if found and found["reason"] == "NoEvictableModel" else None

    condition = wait_for(refused, timeout=60, what="NoEvictableModel")
    assert condition["status"] == "False"
    assert f"{pinned} is pinned" in condition["message"]
    assert f"{namespace}/" not in condition["message"]
    assert gpu_type in condition["message"]
    assert f"{pinned} is pinned" in status(crds, namespace, other)["message"]
    assert status(crds, namespace, pinned)["phase"] == "Ready"
    assert "drain" not in status(crds, namespace, pinned)
    assert replicas(crds, namespace, pinned) == 1


def test_the_operator_needed_nothing_beyond_its_rbac(
    autoscaling_operator: RunningOperator,
) -> None:
    refused = [
        line
        for line in autoscaling_operator.process.log_path.read_text().splitlines()
        if "forbidden" in line.lower() and "being terminated" not in line
    ]
    assert not refused, "\n".join(refused)
