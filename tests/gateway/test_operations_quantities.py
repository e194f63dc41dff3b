"""Requests per node as the scheduler counts them, and nodes as GET /system shows them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from modelserve.gateway.operations.nodes import build_nodes
from modelserve.gateway.operations.quantities import (
    GPU,
    amounts,
    pod_requests,
    quantity,
    requests_per_node,
)


def container(name: str, gpus: str | None = None, **requests: str) -> dict[str, Any]:
    given = {**requests, **({GPU: gpus} if gpus else {})}
    return {"name": name, "resources": {"requests": given}}


def pod(node: str | None, phase: str = "Running", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "p", "namespace": "n"}, "spec": spec}
    if node is not None:
        body["spec"]["nodeName"] = node
    body["status"] = {"phase": phase}
    return body


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", "0.1"),
        ("2", "2"),
        ("1Gi", "1073741824"),
        ("1G", "1000000000"),
        ("512Mi", "536870912"),
    ],
)
def test_quantities_are_read_as_kubernetes_writes_them(text: str, value: str) -> None:
    assert quantity(text) == Decimal(value)


def test_a_quantity_that_is_none_is_refused() -> None:
    with pytest.raises(ValueError):
        quantity("lots")


def test_missing_resources_count_as_zero() -> None:
    assert amounts({"cpu": "1"}) == {"cpu": 1, "memory": 0, GPU: 0}
    assert amounts(None) == {"cpu": 0, "memory": 0, GPU: 0}


def test_a_pod_requests_the_sum_of_its_containers_plus_overhead() -> None:
    found = pod_requests(
        pod(
            "a",
            containers=[
                container("server", cpu="500m", memory="1Gi"),
                container("side", cpu="250m"),
            ],
            overhead={"cpu": "100m"},
        )
    )
    assert found == {"cpu": Decimal("0.85"), "memory": Decimal(2**30), GPU: 0}


def test_an_init_container_that_needs_more_than_the_app_sets_the_request() -> None:
    spec = {
        "initContainers": [container("fetch-model", cpu="2", memory="256Mi")],
        "containers": [container("server", gpus="1", cpu="1", memory="1Gi")],
    }
    assert pod_requests(pod("a", "Running", **spec)) == {"cpu": 2, "memory": 2**30, GPU: 1}


def test_sidecars_run_beside_the_app_and_the_later_init_containers() -> None:
    spec = {
        "initContainers": [
            {**container("proxy", cpu="1"), "restartPolicy": "Always"},
            container("migrate", cpu="2"),
        ],
        "containers": [container("app", cpu="1")],
    }
    # The app runs with the sidecar (1 + 1); `migrate` ran with it too (2 + 1).
    assert pod_requests(pod("a", "Running", **spec))["cpu"] == 3


def test_only_bound_pods_that_did_not_end_count() -> None:
    pods = [
        pod("a", containers=[container("c", cpu="1")]),
        pod("a", containers=[container("c", cpu="2")]),
        pod("a", "Succeeded", containers=[container("c", cpu="8")]),
        pod("b", "Failed", containers=[container("c", cpu="8")]),
        pod(None, "Pending", containers=[container("c", cpu="8")]),
    ]
    found = requests_per_node(pods)
    assert set(found) == {"a"}
    requests, count = found["a"]
    assert (requests, count) == ({"cpu": Decimal(3), "memory": Decimal(0), GPU: Decimal(0)}, 2)


def node(name: str, cpu: str, memory: str, gpus: str | None = None) -> dict[str, Any]:
    capacity = {"cpu": cpu, "memory": memory, "pods": "110", **({GPU: gpus} if gpus else {})}
    return {
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "L4"} if gpus else {}},
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_nodes_show_capacity_allocatable_and_requests_in_cores_bytes_and_gpus() -> None:
    gpu_pod = pod("gpu-0", containers=[container("server", gpus="1", cpu="500m")])
    found = build_nodes([node("gpu-0", "16", "64Gi", "2"), node("cpu-0", "8", "32Gi")], [gpu_pod])
    assert [n["name"] for n in found] == ["cpu-0", "gpu-0"]
    cpu_node, gpu_node = found
    assert cpu_node["requests"] == {"cpu": 0.0, "memory": 0, GPU: 0}
    assert cpu_node["pods"] == 0
    assert gpu_node["capacity"] == {"cpu": 16.0, "memory": 64 * 2**30, GPU: 2}
    assert gpu_node["requests"] == {"cpu": 0.5, "memory": 0, GPU: 1}
    assert gpu_node["gpu_product"] == "L4"
    assert gpu_node["ready"] is True


def test_without_the_pods_requests_are_unknown_not_zero() -> None:
    (found,) = build_nodes([node("cpu-0", "8", "32Gi")], None)
    assert found["requests"] is None
    assert found["pods"] is None
