"""GET /gpu's and /health's pure functions over nodes, pods and node agent reports (stand-ins
in the shape the API server lists them; the same answers from the real control plane are
in test_gpus_cluster.py)."""

from __future__ import annotations

import copy
from typing import Any

from modelserve.common.gpu_reports import (
    GpuFigures,
    GpuReport,
    PowerReport,
    PowerResult,
    build_gpu_lease,
    gpu_report_from_lease,
)
from modelserve.common.power_profiles import (
    DEFAULT_PROFILES,
    build_configmap_data,
    current_profile,
    max_concurrent_jobs,
)
from modelserve.common.tokens import Claims
from modelserve.gateway.gpus.inventory import build_inventory, gpu_summary, pod_gpus
from modelserve.gateway.gpus.power import NO_REPORTS, power_view
from modelserve.gateway.routing import Target

NOW = 1_800_000_000.0


def node(name: str, gpus: int = 0, product: str | None = None) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if product:
        labels["nvidia.com/gpu.product"] = product
    resources = {"cpu": "16", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"capacity": resources, "allocatable": dict(resources)},
    }


def pod(
    name: str,
    node_name: str | None,
    gpus: int,
    *,
    namespace: str = "team-a",
    server: str | None = None,
    phase: str = "Running",
    limits_only: bool = False,
) -> dict[str, Any]:
    resources = (
        {"limits": {"nvidia.com/gpu": str(gpus)}}
        if limits_only
        else {"requests": {"nvidia.com/gpu": str(gpus)}, "limits": {"nvidia.com/gpu": str(gpus)}}
    )
    labels = {"llm.modelserve.io/modelserve": server} if server else {}
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            **({"nodeName": node_name} if node_name else {}),
            "containers": [{"name": "server", "resources": resources if gpus else {}}],
        },
        "status": {"phase": phase},
    }


def claims(sub: str, *, admin: bool = False, teams: tuple[str, ...] = ()) -> Claims:
    return Claims(
        sub=sub,
        roles=["admin"] if admin else [],
        teams=list(teams),
        iss="modelserve",
        aud="modelserve",
        exp=0,
        iat=0,
        jti="j",
    )


def target(name: str, owner: str, *, team: str | None = None, namespace: str = "team-a") -> Target:
    return Target(
        server_id=f"uid-{name}",
        namespace=namespace,
        name=name,
        served_name=name,
        endpoint="",
        ready=True,
        phase="Ready",
        message="",
        owner=owner,
        team=team,
    )


NODES = [
    node("cpu-0"),
    node("gpu-a100-0", 4, "NVIDIA-A100-SXM4-80GB"),
    node("gpu-l4-0", 2, "NVIDIA-L4"),
]
PODS = [
    pod("alice-qwen-0", "gpu-a100-0", 1, server="alice-qwen"),
    pod("bob-llama-0", "gpu-a100-0", 2, server="bob-llama", limits_only=True),
    pod("train-0", "gpu-l4-0", 1, namespace="research"),
    pod("done-0", "gpu-l4-0", 1, phase="Succeeded"),
    pod("pending-0", None, 1),
    pod("web-0", "cpu-0", 0),
]
SERVERS = {
    ("team-a", "alice-qwen"): target("alice-qwen", "alice"),
    ("team-a", "bob-llama"): target("bob-llama", "bob", team="nlp"),
}
A100 = (
    GpuFigures(
        index=0,
        uuid="GPU-a",
        name="NVIDIA A100-SXM4-80GB",
        driver_version="550.127.05",
        memory_total_mb=81920,
        memory_used_mb=40953,
        utilization_gpu=97,
        utilization_mem=61,
        temperature_gpu=58,
        power_draw_w=372.41,
        power_limit_w=400,
        fan_speed_pct=None,
        unavailable={"fan_speed_pct": "[N/A]"},
    ),
)


def report(node_name: str, *, renewed: float = NOW - 1, **extra: Any) -> GpuReport:
    return GpuReport(node=node_name, renewed=renewed, duration=30, gpus=A100 * 4, **extra)


def test_pods_count_as_the_scheduler_counts_them() -> None:
    assert pod_gpus(pod("p", "n", 2)) == 2
    assert pod_gpus(pod("p", "n", 3, limits_only=True)) == 3
    init = pod("p", "n", 1)
    init["spec"]["initContainers"] = [
        {"name": "fetch", "resources": {"limits": {"nvidia.com/gpu": "2"}}}
    ]
    assert pod_gpus(init) == 2


def test_each_gpu_node_with_capacity_allocations_and_no_invented_figures() -> None:
    answer = build_inventory(NODES, PODS, [], SERVERS, claims("root", admin=True), NOW)
    nodes = {entry["node"]: entry for entry in answer["nodes"]}
    assert sorted(nodes) == ["gpu-a100-0", "gpu-l4-0"]
    a100 = nodes["gpu-a100-0"]
    assert (a100["gpu_type"], a100["capacity"], a100["allocatable"]) == (
        "NVIDIA-A100-SXM4-80GB",
        4,
        4,
    )
    assert (a100["allocated"], a100["free"]) == (3, 1)
    assert a100["allocations"] == [
        {
            "namespace": "team-a",
            "server": "alice-qwen",
            "server_id": "uid-alice-qwen",
            "pod": "alice-qwen-0",
            "gpus": 1,
        },
        {
            "namespace": "team-a",
            "server": "bob-llama",
            "server_id": "uid-bob-llama",
            "pod": "bob-llama-0",
            "gpus": 2,
        },
    ]
    # An ended pod holds nothing; a pod of no ModelServe is shown to admins by name.
    assert nodes["gpu-l4-0"]["allocated"] == 1
    assert nodes["gpu-l4-0"]["allocations"][0]["pod"] == "train-0"
    assert a100["live"] is None
    assert a100["live_source"] == "none: no node agent reports for this node"
    assert answer["totals"] == {
        "nodes": 2,
        "capacity": 6,
        "allocatable": 6,
        "allocated": 4,
        "gpus_with_live_figures": 0,
    }
    assert [(t["gpu_type"], t["capacity"]) for t in answer["types"]] == [
        ("NVIDIA-A100-SXM4-80GB", 4),
        ("NVIDIA-L4", 2),
    ]
    assert answer["gpus"] == [] and "temperature_gpu" not in answer


def test_others_allocations_are_counted_but_not_named() -> None:
    alice = build_inventory(NODES, PODS, [], SERVERS, claims("alice"), NOW)
    a100 = alice["nodes"][0]
    assert a100["allocated"] == 3
    assert [entry["server"] for entry in a100["allocations"]] == ["alice-qwen", None]
    assert a100["allocations"][1] == {
        "namespace": None,
        "server": None,
        "server_id": None,
        "pod": None,
        "gpus": 2,
    }
    assert sum(entry["gpus"] for entry in a100["allocations"]) == a100["allocated"]
    # A team member sees the team's server; nobody but admins sees a stray pod's name.
    carol = build_inventory(NODES, PODS, [], SERVERS, claims("carol", teams=("nlp",)), NOW)
    assert [e["server"] for e in carol["nodes"][0]["allocations"]] == ["bob-llama", None]
    assert carol["nodes"][1]["allocations"] == [
        {"namespace": None, "server": None, "server_id": None, "pod": None, "gpus": 1}
    ]


def test_live_figures_only_from_a_live_report() -> None:
    reports = [
        report("gpu-a100-0"),
        report("gpu-l4-0", renewed=NOW - 100),  # expired
    ]
    answer = build_inventory(NODES, PODS, reports, SERVERS, claims("alice"), NOW)
    a100, l4 = answer["nodes"]
    assert len(a100["live"]) == 4 and a100["live"][0]["memory_used_mb"] == 40953
    assert a100["live"][0]["fan_speed_pct"] is None
    assert a100["live_source"].startswith("node agent (nvidia-smi), reported at ")
    assert l4["live"] is None
    assert l4["live_source"].startswith("none: the node agent's last report expired at ")
    assert len(answer["gpus"]) == 4 and answer["gpus"][0]["node"] == "gpu-a100-0"
    failing = [report("gpu-a100-0", error="nvidia-smi exited 127: nvidia-smi: not found")]
    a100 = build_inventory(NODES, PODS, failing, SERVERS, claims("a"), NOW)["nodes"][0]
    assert a100["live"] is None
    assert a100["live_source"] == (
        "none: the node agent could not read the GPUs: nvidia-smi exited 127: nvidia-smi: not found"
    )


def test_the_seed_s_top_level_fields_only_for_a_single_reported_gpu() -> None:
    single = [node("box", 1, "NVIDIA-GeForce-RTX-3090")]
    alone = GpuReport(node="box", renewed=NOW - 1, duration=30, gpus=A100)
    answer = build_inventory(single, [], [alone], {}, claims("a"), NOW)
    assert answer["temperature_gpu"] == 58 and answer["power_limit_w"] == 400
    assert answer["name"] == "NVIDIA A100-SXM4-80GB" and answer["fan_speed_pct"] is None
    # Without a report there is nothing to copy up.
    assert "temperature_gpu" not in build_inventory(single, [], [], {}, claims("a"), NOW)


def test_health_summary_counts_types_and_only_measured_memory() -> None:
    summary = gpu_summary(NODES, [], NOW)
    assert summary == {
        "available": True,
        "device_count": 6,
        "device_name": None,
        "device_names": ["NVIDIA-A100-SXM4-80GB", "NVIDIA-L4"],
        "memory_allocated_gb": None,
        "memory_reserved_gb": None,
        "memory_total_gb": None,
        "live_gpus": 0,
    }
    # One node of two reports: still no memory figure (it would be a part posing as all).
    assert gpu_summary(NODES, [report("gpu-a100-0")], NOW)["memory_allocated_gb"] is None
    only_a100 = [NODES[0], NODES[1]]
    full = gpu_summary(only_a100, [report("gpu-a100-0")], NOW)
    assert full["device_name"] == "NVIDIA-A100-SXM4-80GB"
    assert full["memory_allocated_gb"] == round(4 * 40953 / 1024, 2)
    assert full["memory_total_gb"] == 320.0
    assert gpu_summary([node("cpu-0")], [], NOW)["available"] is False


def test_a_report_survives_its_lease() -> None:
    power = PowerReport(
        "quiet",
        True,
        220.0,
        True,
        (PowerResult(0, "GPU-a", "not_permitted", None, "nvidia-smi -pl exited 4: …"),),
    )
    sent = GpuReport(node="gpu-a100-0", renewed=NOW, duration=30, gpus=A100, power=power)
    lease = build_gpu_lease(sent, "modelserve")
    assert lease["metadata"]["name"] == "modelserve-gpu-gpu-a100-0"
    assert lease["metadata"]["labels"] == {"llm.modelserve.io/gpu-report": "true"}
    assert lease["spec"]["leaseDurationSeconds"] == 30
    assert gpu_report_from_lease(lease) == sent
    # One Lease per node: another node's name or holder carries no report of this one.
    moved = copy.deepcopy(lease)
    moved["metadata"]["name"] = "modelserve-gpu-gpu-h100-9"
    assert gpu_report_from_lease(moved) is None
    held = copy.deepcopy(lease)
    held["spec"]["holderIdentity"] = "gpu-h100-9"
    assert gpu_report_from_lease(held) is None
    lease["metadata"]["annotations"]["llm.modelserve.io/gpu-report"] = "{not json"
    assert gpu_report_from_lease(lease) is None
    assert gpu_report_from_lease({"metadata": {"labels": {}}}) is None


def test_power_profiles_from_the_configmap() -> None:
    none = current_profile(None)
    assert (none.name, none.chosen, none.profile) == ("normal", False, DEFAULT_PROFILES["normal"])
    data = build_configmap_data("max", DEFAULT_PROFILES)
    chosen = current_profile(data)
    assert (chosen.name, chosen.chosen, chosen.profile.power_limit_w) == ("max", True, 350.0)
    assert max_concurrent_jobs(data) == 2 and max_concurrent_jobs(None) == 1
    # Unreadable figures fall back to the defaults; an unknown name is no choice.
    assert current_profile({"profile": "quiet", "profiles": "[]"}).profile.power_limit_w == 220
    assert current_profile({"profile": "turbo"}).chosen is False


def test_the_power_view_says_where_nothing_is_applied() -> None:
    view = power_view(current_profile(None), None, DEFAULT_PROFILES, [], ["gpu-a100-0"], NOW)
    assert view["current"] == "normal" and view["chosen"] is False
    assert view["profiles"]["quiet"] == {
        "power_limit_w": 220,
        "max_concurrent_jobs": 1,
        "description": "Low power, quiet operation",
    }
    assert (view["applied"], view["applied_note"]) == ([], NO_REPORTS)
    data = build_configmap_data("quiet", DEFAULT_PROFILES)
    power = PowerReport("quiet", True, 220.0, True, (PowerResult(0, "GPU-a", "applied", 220.0),))
    reports = [GpuReport(node="gpu-a100-0", renewed=NOW - 1, duration=30, power=power)]
    nodes = ["gpu-a100-0", "gpu-l4-0"]
    view = power_view(current_profile(data), data, DEFAULT_PROFILES, reports, nodes, NOW)
    (applied,) = view["applied"]
    assert applied["node"] == "gpu-a100-0" and applied["gpus"][0]["result"] == "applied"
    assert view["applied_note"] == (
        "no node agent reports from gpu-l4-0: power limits not applied there"
    )
