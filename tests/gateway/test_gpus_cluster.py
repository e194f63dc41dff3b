"""GET /gpu, GET/POST /settings/power_profile and /health's gpu summary against the real
control plane: the test bed's KWOK GPU nodes (gpu-a100-0: 4 GPUs, gpu-l4-0: 2), a GPU
server scheduled there by the operator, and node agents as real processes reading a
stand-in nvidia-smi (tests/nodeagent/data: no GPU exists here, a real nvidia-smi never
ran)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from modelserve.common.power_profiles import CONFIGMAP_NAME, current_profile, max_concurrent_jobs
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.nodeagent import running_nodeagent
from modelserve.testbed.platform import RunningOperator, RunningService, nodeagent_kubeconfig
from modelserve.testbed.polling import wait_for

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.gateway.conftest import ModelStore

pytestmark = [pytest.mark.kube, pytest.mark.postgres]
FAKE_SMI = Path(__file__).parent.parent / "nodeagent" / "data" / "fake_nvidia_smi.py"
PLATFORM = "modelserve"
NO_AGENT = "none: no node agent reports for this node"


def _nodes(client: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = client.get("/gpu")
    assert answer.status_code == 200, answer.text
    return {entry["node"]: entry for entry in answer.json()["nodes"]}


def _no_profile(kube: KubeCluster) -> None:
    kube.kubectl("delete", "configmap", CONFIGMAP_NAME, "-n", PLATFORM, "--ignore-not-found")


@pytest.mark.minio
def test_gpu_nodes_and_a_served_model_s_allocation(
    crds: KubeCluster,
    gateway_kube: str,
    operator: RunningOperator,
    namespace: str,
    model_store: ModelStore,
    start_gateway: Callable[..., RunningService],
    as_user: Callable[..., httpx.Client],
) -> None:
    gateway = start_gateway(
        GATEWAY_KUBECONFIG=gateway_kube,
        GATEWAY_DOWNLOAD_URL=model_store.url,
        GATEWAY_NAMESPACE=namespace,
    )
    alice, bob = as_user(gateway, "alice"), as_user(gateway, "bob")
    root = as_user(gateway, "root", roles=("admin",))
    assert httpx.get(f"{gateway.url}/gpu").status_code == 401

    nodes = _nodes(alice)
    assert {"gpu-a100-0", "gpu-l4-0"} <= set(nodes)
    assert "cpu-0" not in nodes
    a100, l4 = nodes["gpu-a100-0"], nodes["gpu-l4-0"]
    assert (a100["gpu_type"], a100["capacity"], a100["allocatable"]) == (
        "NVIDIA-A100-SXM4-80GB",
        4,
        4,
    )
    assert (l4["gpu_type"], l4["capacity"], l4["allocatable"]) == ("NVIDIA-L4", 2, 2)
    assert (a100["live"], a100["live_source"]) == (None, NO_AGENT)
    health = httpx.get(f"{gateway.url}/health").json()
    assert health["gpu"]["available"] is True
    assert health["gpu"]["device_count"] >= 6
    assert {"NVIDIA-A100-SXM4-80GB", "NVIDIA-L4"} <= set(health["gpu"]["device_names"])
    assert health["gpu"]["memory_allocated_gb"] is None  # no agent: nothing measured

    served = bob.post("/serve", json={"model_name": "Tiny-ST", "gpus": 1})
    assert served.status_code == 201, served.text
    server = served.json()

    def allocated(client: httpx.Client) -> list[dict[str, Any]] | None:
        found = [
            entry
            for node in _nodes(client).values()
            for entry in node["allocations"]
            if entry["server"] == server["name"]
        ]
        return found or None

    (mine,) = wait_for(lambda: allocated(bob), timeout=90, what="bob's server to hold a GPU")
    assert mine == {
        "namespace": namespace,
        "server": server["name"],
        "server_id": server["server_id"],
        "pod": mine["pod"],
        "gpus": 1,
    }
    assert mine["pod"].startswith(server["name"])
    assert allocated(root) == [mine]
    # Alice sees the GPU counted but not whose it is.
    assert allocated(alice) is None
    for entry in _nodes(alice).values():
        named = sum(e["gpus"] for e in entry["allocations"])
        assert named == entry["allocated"]
    totals = {name: entry["allocated"] for name, entry in _nodes(root).items()}
    assert sum(totals.values()) >= 1
    assert root.delete(f"/stop/{server['server_id']}").status_code == 200


def test_node_agents_live_figures_and_power_profiles(
    crds: KubeCluster,
    gateway_kube: str,
    start_gateway: Callable[..., RunningService],
    as_user: Callable[..., httpx.Client],
    tmp_path: Path,
    testbed_dir: Path,
) -> None:
    _no_profile(crds)
    gateway = start_gateway(GATEWAY_KUBECONFIG=gateway_kube, GATEWAY_GPU_CACHE_SECONDS="0")
    alice, root = as_user(gateway, "alice"), as_user(gateway, "root", roles=("admin",))

    before = alice.get("/settings/power_profile")
    assert before.status_code == 200, before.text
    view = before.json()
    assert (view["current"], view["chosen"], view["max_concurrent_jobs"]) == ("normal", False, 1)
    assert view["profiles"] == {
        "quiet": {
            "power_limit_w": 220,
            "max_concurrent_jobs": 1,
            "description": "Low power, quiet operation",
        },
        "normal": {
            "power_limit_w": 280,
            "max_concurrent_jobs": 1,
            "description": "Balanced performance",
        },
        "max": {
            "power_limit_w": 350,
            "max_concurrent_jobs": 2,
            "description": "Maximum performance",
        },
    }
    assert view["applied"] == []
    assert view["applied_note"] == (
        "no node agent reports: power limits are not applied on any node"
    )

    kubeconfig = nodeagent_kubeconfig(crds)
    logs = testbed_dir / "logs"
    with (
        running_nodeagent(
            kubeconfig,
            "gpu-a100-0",
            FAKE_SMI,
            tmp_path,
            logs,
            NODEAGENT_APPLY_POWER_LIMITS="true",
        ) as a100_calls,
        running_nodeagent(
            kubeconfig,
            "gpu-l4-0",
            FAKE_SMI,
            tmp_path,
            logs,
            NODEAGENT_APPLY_POWER_LIMITS="true",
            FAKE_SMI_REFUSE="1",
        ),
    ):

        def live() -> dict[str, Any] | None:
            nodes = _nodes(alice)
            return nodes if all(nodes[n]["live"] for n in ("gpu-a100-0", "gpu-l4-0")) else None

        nodes = wait_for(live, timeout=30, what="the agents' figures in /gpu")
        a100 = nodes["gpu-a100-0"]
        assert a100["live_source"].startswith("node agent (nvidia-smi), reported at ")
        assert [gpu["index"] for gpu in a100["live"]] == [0, 1, 2, 3]
        assert a100["live"][1] | {"uuid": None} == {
            "index": 1,
            "uuid": None,
            "name": "NVIDIA A100-SXM4-80GB",
            "driver_version": "550.127.05",
            "memory_total_mb": 81920,
            "memory_used_mb": 40953,
            "utilization_gpu": 97,
            "utilization_mem": 61,
            "temperature_gpu": 58,
            "power_draw_w": 372.41,
            "power_limit_w": 400,
            "fan_speed_pct": None,
            "unavailable": {"fan_speed_pct": "[N/A]"},
        }

        # /health answers what it read last while it reads again: a probe or two later.
        def measured() -> dict[str, Any] | None:
            gpu: dict[str, Any] = httpx.get(f"{gateway.url}/health").json()["gpu"]
            return gpu if gpu["live_gpus"] >= 8 else None

        health = wait_for(measured, timeout=10, what="/health to count the reported GPUs")
        assert health["available"] is True

        # Nobody chose a profile: the agents leave the limits alone and say so.
        view = alice.get("/settings/power_profile").json()
        applied = {entry["node"]: entry for entry in view["applied"]}
        assert applied["gpu-a100-0"]["chosen"] is False
        assert "no power profile chosen" in applied["gpu-a100-0"]["message"]
        assert "-pl" not in a100_calls.read_text()

        # Choosing one is for admins, among the three.
        refused = alice.post("/settings/power_profile?profile=quiet")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "admin_only"
        unknown = root.post("/settings/power_profile?profile=turbo")
        assert unknown.status_code == 422
        assert unknown.json()["error"] == {
            "code": "unknown_power_profile",
            "message": "unknown power profile 'turbo': one of quiet, normal, max",
        }
        for bad in ('{"profile": 3}', "[]", "not json"):
            answer = root.post("/settings/power_profile", content=bad)
            assert answer.status_code == 422, bad
            assert answer.json()["error"]["code"] == "invalid_body"
        missing = root.post("/settings/power_profile")
        assert missing.json()["error"]["code"] == "unknown_power_profile"
        assert "name a profile" in missing.json()["error"]["message"]
        clash = root.post("/settings/power_profile?profile=max", json={"profile": "quiet"})
        assert clash.json()["error"]["code"] == "conflicting_profiles"

        chosen = root.post("/settings/power_profile?profile=quiet")
        assert chosen.status_code == 200, chosen.text
        assert (chosen.json()["current"], chosen.json()["chosen"]) == ("quiet", True)
        stored = json.loads(
            crds.kubectl("get", "configmap", CONFIGMAP_NAME, "-n", PLATFORM, "-o", "json")
        )["data"]
        # The one place the job engine and the agents read.
        assert current_profile(stored).name == "quiet" and max_concurrent_jobs(stored) == 1

        def applied_to(node: str, result: str) -> dict[str, Any] | None:
            entries = alice.get("/settings/power_profile").json()["applied"]
            entry = next((e for e in entries if e["node"] == node), None)
            if entry is None or entry["profile"] != "quiet" or not entry["gpus"]:
                return None
            return entry if all(g["result"] == result for g in entry["gpus"]) else None

        a100_power = wait_for(
            lambda: applied_to("gpu-a100-0", "applied") or applied_to("gpu-a100-0", "unchanged"),
            timeout=30,
            what="the A100 agent to apply 220 W",
        )
        assert a100_power["target_w"] == 220 and a100_power["enabled"] is True
        assert {gpu["limit_w"] for gpu in a100_power["gpus"]} == {220}
        set_calls = [line for line in a100_calls.read_text().splitlines() if "-pl" in line]
        assert sorted(set_calls) == [f"-i {index} -pl 220" for index in range(4)]
        l4_power = wait_for(
            lambda: applied_to("gpu-l4-0", "not_permitted"), timeout=30, what="the L4's refusal"
        )
        assert l4_power["gpus"][0]["message"] == (
            "nvidia-smi -pl exited 4: Insufficient Permissions for GPU 00000000:4F:00.0"
        )
        # The next reads show the new limit, and nothing is set twice.
        wait_for(lambda: applied_to("gpu-a100-0", "unchanged"), timeout=30, what="220 W to stay")
        a100 = _nodes(alice)["gpu-a100-0"]
        assert {gpu["power_limit_w"] for gpu in a100["live"]} == {220}
        assert len([c for c in a100_calls.read_text().splitlines() if "-pl" in c]) == 4

        by_body = root.post("/settings/power_profile", json={"profile": "normal"})
        assert by_body.status_code == 200 and by_body.json()["current"] == "normal"

    # The agents stopped (their Leases deleted): no figures, nothing applied.
    def gone() -> bool:
        nodes = _nodes(alice)
        return all(nodes[n]["live"] is None for n in ("gpu-a100-0", "gpu-l4-0"))

    wait_for(gone, timeout=30, what="the agents' figures to go")
    assert _nodes(alice)["gpu-a100-0"]["live_source"] == NO_AGENT
    _no_profile(crds)
