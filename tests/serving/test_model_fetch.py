"""The fetch step for real: pods of a llama.cpp server get presigned URLs and recorded
digests, never the store's credentials, and refuse bytes that are not the recorded ones."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import tag_as_recorded
from modelserve.testbed.testing_loop import modelserve, wait_ready

pytestmark = [pytest.mark.kube, pytest.mark.minio, pytest.mark.usefixtures("operator")]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _put(store: MinioServer, bucket: str, key: str, data: bytes) -> None:
    store.client().put_object(bucket, key, io.BytesIO(data), len(data))


def _secret(kube: KubeCluster, namespace: str, name: str) -> dict[str, str]:
    found = kube.get_json("secret", f"{name}-model-store", "-n", namespace)
    return {key: base64.b64decode(value).decode() for key, value in found["data"].items()}


def _pod(kube: KubeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    pods = kube.get_json("pods", "-n", namespace, "-l", f"llm.modelserve.io/modelserve={name}")
    return pods["items"][0] if pods["items"] else None


def test_a_verified_fetch_serves_and_the_tenant_secret_holds_no_credential(
    crds: KubeCluster, namespace: str, platform_store: MinioServer, platform_bucket: str
) -> None:
    gguf = Path(ensure_runtime().model)
    data = gguf.read_bytes()
    model_id = str(uuid.uuid4())
    key = f"models/{model_id}/{gguf.name}"
    _put(platform_store, platform_bucket, key, data)
    tag_as_recorded(platform_store.client(), platform_bucket, key, _digest(data), model_id)

    body = modelserve("fetched", f"s3://{platform_bucket}/{key}", 1)
    crds.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(body))
    wait_ready(crds, namespace, "fetched", 1)

    secret = _secret(crds, namespace, "fetched")
    assert set(secret) == {"files"}
    text = json.dumps(secret)
    assert platform_store.secret_key not in text
    listing = json.loads(secret["files"])
    (file,) = listing["files"]
    assert (file["path"], file["sha256"]) == (gguf.name, _digest(data))
    assert "X-Amz-Signature=" in file["url"] and "X-Amz-Expires=" in file["url"]
    pod = _pod(crds, namespace, "fetched")
    assert pod is not None
    log = crds.kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", "fetch-model")
    assert "SHA-256 verified" in log
    # The init step's environment names the Secret's one key, and nothing of the store.
    init = pod["spec"]["initContainers"][0]
    assert {e["name"] for e in init["env"]} == {"MODEL_URI", "MODEL_DIR", "MODEL_FILES"}


def test_a_tampered_object_fails_the_init_step_and_the_server_never_starts(
    crds: KubeCluster, namespace: str, platform_store: MinioServer, platform_bucket: str
) -> None:
    """Bytes changed after the download service tagged them (tags copied over, as someone
    with write access to the store could): the digest check refuses the file."""
    data = Path(ensure_runtime().model).read_bytes()
    model_id = str(uuid.uuid4())
    key = f"models/{model_id}/model.gguf"
    tampered = data[:4096] + bytes(b ^ 0xFF for b in data[4096:4160]) + data[4160:]
    _put(platform_store, platform_bucket, key, tampered)
    tag_as_recorded(platform_store.client(), platform_bucket, key, _digest(data), model_id)

    body = modelserve("tampered", f"s3://{platform_bucket}/{key}", 1)
    crds.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(body))

    def refused() -> dict[str, Any] | None:
        status = crds.get_json("ms", "tampered", "-n", namespace).get("status") or {}
        return status if "SHA-256" in (status.get("message") or "") else None

    status = wait_for(refused, timeout=120, what="the digest refusal in the status")
    assert status["phase"] == "Failed"
    assert f"the model record says {_digest(data)}" in status["message"]
    available = next(c for c in status["conditions"] if c["type"] == "ModelAvailable")
    assert (available["status"], available["reason"]) == ("False", "FetchFailed")
    pod = _pod(crds, namespace, "tampered")
    assert pod is not None
    (server,) = pod["status"]["containerStatuses"]
    assert "running" not in server["state"] and not server.get("lastState")
    assert crds.runner is not None
    uid = pod["metadata"]["uid"]
    workers = [w for w in crds.runner.workers.values() if w.pod["metadata"]["uid"] == uid]
    assert workers and "server" not in workers[0].started_at
