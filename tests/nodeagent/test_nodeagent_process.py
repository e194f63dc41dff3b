"""`modelserve-nodeagent` as a real process against the test bed's API server, with its own
service account (services/nodeagent/deploy/rbac.yaml) and a stand-in nvidia-smi that
prints recorded-format output (no GPU here: a real nvidia-smi never ran)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelserve.common.gpu_reports import gpu_report_from_lease
from modelserve.common.power_profiles import CONFIGMAP_NAME
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.nodeagent import running_nodeagent
from modelserve.testbed.platform import nodeagent_kubeconfig
from modelserve.testbed.polling import wait_for

pytestmark = pytest.mark.kube
FAKE_SMI = Path(__file__).parent / "data" / "fake_nvidia_smi.py"
PLATFORM = "modelserve"


def _lease(kube: KubeCluster, node: str) -> dict[str, Any] | None:
    found = kube.kubectl(
        "get", "lease", f"modelserve-gpu-{node}", "-n", PLATFORM, "-o", "json", "--ignore-not-found"
    )
    return json.loads(found) if found.strip() else None


def test_the_agent_reports_its_gpus_in_a_lease_and_removes_it_at_shutdown(
    crds: KubeCluster, tmp_path: Path, testbed_dir: Path
) -> None:
    kubeconfig = nodeagent_kubeconfig(crds)
    crds.kubectl("delete", "configmap", CONFIGMAP_NAME, "-n", PLATFORM, "--ignore-not-found")
    node = "agent-test-node"
    with running_nodeagent(
        kubeconfig,
        node,
        FAKE_SMI,
        tmp_path,
        testbed_dir / "logs",
        NODEAGENT_APPLY_POWER_LIMITS="true",
    ) as calls:
        lease = wait_for(lambda: _lease(crds, node), timeout=30, what="the agent's Lease")
        report = gpu_report_from_lease(lease)
        assert report is not None and report.node == node and report.error is None
        assert lease["spec"]["leaseDurationSeconds"] == 5
        assert [gpu.index for gpu in report.gpus] == [0, 1, 2, 3]
        assert report.gpus[1].memory_used_mb == 40953
        assert report.gpus[1].unavailable == {"fan_speed_pct": "[N/A]"}
        # No profile chosen: the limits are left alone, and the report says so.
        assert report.power is not None and report.power.chosen is False
        assert "no power profile chosen" in (report.power.message or "")
        assert "-pl" not in calls.read_text()
    # SIGTERM: the Lease goes with the agent.
    wait_for(lambda: _lease(crds, node) is None, timeout=15, what="the Lease to be deleted")


def test_nvidia_smi_missing_is_reported_not_fatal(
    crds: KubeCluster, tmp_path: Path, testbed_dir: Path
) -> None:
    kubeconfig = nodeagent_kubeconfig(crds)
    node = "agent-test-no-smi"
    with running_nodeagent(
        kubeconfig,
        node,
        FAKE_SMI,
        tmp_path,
        testbed_dir / "logs",
        NODEAGENT_NVIDIA_SMI=str(tmp_path / "no-such-nvidia-smi"),
    ):
        lease = wait_for(lambda: _lease(crds, node), timeout=30, what="the agent's Lease")
        report = gpu_report_from_lease(lease)
        assert report is not None and report.gpus == ()
        assert (
            report.error == f"nvidia-smi exited 127: {tmp_path / 'no-such-nvidia-smi'}: not found"
        )
