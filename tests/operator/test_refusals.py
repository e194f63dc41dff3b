"""Specs the operator refuses on its own, on the real API server (defence in depth: here no
admission webhook stands in front of it)."""

from __future__ import annotations

import json
import time

import pytest

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_operator import apply, get, manifest, wait_phase

pytestmark = pytest.mark.usefixtures("operator")


def test_args_that_set_an_operator_owned_flag_run_nothing(
    crds: KubeCluster, namespace: str, smollm2_uri: str
) -> None:
    body = manifest("llamacpp-cpu.yaml", spec__args=["--hf-repo", "someone/else"])
    name = apply(crds, namespace, body)
    status = wait_phase(crds, namespace, name, "Failed")
    assert "'--hf-repo'" in status["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "OwnedFlag")
    assert not get(crds, namespace, "deployments")["items"]


def test_a_server_refused_after_it_ran_keeps_nothing(
    crds: KubeCluster, namespace: str, smollm2_uri: str
) -> None:
    """Refused once running: its children are pruned and stay gone (their deletions are
    not taken for drift to be repaired, which re-created them in a loop)."""
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml"))
    wait_for(
        lambda: get(crds, namespace, "deployments")["items"],
        timeout=60,
        what="the server's Deployment",
    )
    patch = json.dumps({"spec": {"args": ["--port", "9999"]}})
    crds.kubectl("patch", f"ms/{name}", "-n", namespace, "--type=merge", "-p", patch)
    wait_phase(crds, namespace, name, "Failed")
    wait_for(
        lambda: not get(crds, namespace, "deployments")["items"],
        timeout=60,
        what="the refused server's Deployment to go",
    )
    watched_until = time.monotonic() + 5
    while time.monotonic() < watched_until:
        kinds = [get(crds, namespace, kind)["items"] for kind in ("deployments", "services")]
        assert kinds == [[], []], kinds
        time.sleep(0.5)


def test_a_model_over_several_nodes_is_refused_until_the_operator_serves_groups(
    crds: KubeCluster, namespace: str
) -> None:
    """The CRD takes spec.resources.nodes (issue 23), but the reconcile loop does not build
    LeaderWorkerSets yet: a one-pod Deployment would never load such a model, so the
    operator says so and runs nothing."""
    name = apply(crds, namespace, manifest("vllm-multinode.yaml"))
    status = wait_phase(crds, namespace, name, "Failed")
    assert "spec.resources.nodes" in status["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "MultiNodeNotYetServed")
    assert not get(crds, namespace, "deployments")["items"]
