"""Specs the operator refuses on its own, on the real API server (defence in depth: here no
admission webhook stands in front of it)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import record_config_only
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


@pytest.mark.parametrize(
    ("spec", "reason", "named"),
    [
        # The kubelet would expand $(A) from spec.env after every check: an owned flag.
        (
            {"spec__args": ["$(A)"], "spec__env": [{"name": "A", "value": "--api-key=x"}]},
            "ArgExpansion",
            "'$(A)'",
        ),
        # Every GPU of the node, other tenants' too, under the NVIDIA container runtime.
        ({"spec__env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]}, "OwnedFlag", ""),
    ],
    ids=["expansion", "gpus"],
)
def test_args_expanded_later_or_gpu_variables_run_nothing(
    crds: KubeCluster,
    namespace: str,
    smollm2_uri: str,
    spec: dict[str, Any],
    reason: str,
    named: str,
) -> None:
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml", **spec))
    status = wait_phase(crds, namespace, name, "Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert (named or "NVIDIA_VISIBLE_DEVICES") in status["message"]
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


def test_a_model_over_several_nodes_is_refused_where_leaderworkerset_is_not_installed(
    crds: KubeCluster, namespace: str, platform_store: MinioServer
) -> None:
    """This cluster has no LeaderWorkerSet CRD (tests/operator/test_multinode_serving.py
    runs one that has): the API server refuses the operator's LeaderWorkerSet, and the
    operator says why in the status and keeps nothing of the server, rather than staying
    Pending with a store Secret and a Service for pods that never come."""
    body = manifest("vllm-multinode.yaml")
    record_config_only(platform_store, body["spec"]["model"]["uri"], "multinode")
    name = apply(crds, namespace, body)
    status = wait_phase(crds, namespace, name, "Failed")
    assert "install LeaderWorkerSet" in status["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "LeaderWorkerSetMissing")
    wait_for(
        lambda: (
            not any(
                get(crds, namespace, kind)["items"]
                for kind in ("deployments", "services", "secrets")
            )
        ),
        timeout=30,
        what="nothing of the refused server to remain",
    )


def test_a_name_another_object_holds_is_left_to_it(
    crds: KubeCluster, namespace: str, smollm2_uri: str
) -> None:
    """A ModelServe whose Service would be an existing one (`kubernetes` in `default`, a
    tenant's own): applied by force, that Service would become the server's, be changed
    and go with it. It is left as it is; the ModelServe is Failed, NameTaken, until the
    name is free."""
    body = manifest("llamacpp-cpu.yaml")
    name = body["metadata"]["name"]
    theirs = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": "theirs"}},
        "spec": {"ports": [{"port": 443, "targetPort": 6443}]},
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(theirs))
    apply(crds, namespace, body)
    status = wait_phase(crds, namespace, name, "Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NameTaken")
    assert f"Service {namespace}/{name} exists" in ready["message"]
    kept = crds.get_json("service", name, "-n", namespace)
    assert "ownerReferences" not in kept["metadata"]
    assert kept["metadata"]["labels"] == {"app": "theirs"}
    assert "selector" not in kept["spec"]
    assert not get(crds, namespace, "deployments")["items"]

    # Freed, and the spec changed: served.
    crds.kubectl("delete", "service", name, "-n", namespace)
    crds.kubectl("patch", "ms", name, "-n", namespace, "--type=merge",
                 "-p", json.dumps({"spec": {"args": ["--ctx-size", "1024"]}}))  # fmt: skip
    wait_for(
        lambda: get(crds, namespace, "deployments")["items"],
        timeout=60,
        what="the Deployment once the name is free",
    )
    owned = crds.get_json("service", name, "-n", namespace)["metadata"]["ownerReferences"]
    assert [ref["kind"] for ref in owned] == ["ModelServe"]
