"""Specs the operator refuses on its own, on the real API server (defence in depth: here no
admission webhook stands in front of it)."""

from __future__ import annotations

import pytest

from modelserve.testbed.kube import KubeCluster
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
