"""What the operator serves from the platform store, on the real API server and MinIO:
only objects the download service recorded (tagged with their SHA-256)."""

from __future__ import annotations

import io

import pytest

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.testing_operator import apply, get, manifest, wait_phase

pytestmark = pytest.mark.usefixtures("operator")


def test_an_object_without_a_recorded_digest_is_not_served(
    crds: KubeCluster, namespace: str, platform_store: MinioServer, platform_bucket: str
) -> None:
    key = "models/uploaded-by-hand/model.gguf"
    platform_store.client().put_object(platform_bucket, key, io.BytesIO(b"GGUF..."), 7)
    body = manifest("llamacpp-cpu.yaml", spec__model__uri=f"s3://{platform_bucket}/{key}")
    name = apply(crds, namespace, body)

    status = wait_phase(crds, namespace, name, "Failed")
    assert "not a recorded download" in status["message"]
    available = next(c for c in status["conditions"] if c["type"] == "ModelAvailable")
    assert (available["status"], available["reason"]) == ("False", "NotRecorded")
    assert not get(crds, namespace, "deployments")["items"]
    assert not get(crds, namespace, "secrets", "-l", f"llm.modelserve.io/modelserve={name}")[
        "items"
    ]
