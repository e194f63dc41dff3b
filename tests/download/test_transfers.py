"""Models copied from the upstream store into the platform store by the real service."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modelserve.download.sources import folder_digest
from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.objectstores import MinioServer

pytestmark = [pytest.mark.postgres, pytest.mark.minio]


def test_smollm2_gguf_by_model_uuid(
    admin: httpx.Client,
    upstream_store: MinioServer,
    upstream_bucket: str,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    model = ensure_runtime().model
    data = model.read_bytes()
    model_id = str(uuid.uuid4())
    digest = hashlib.sha256(data).hexdigest()
    upstream_store.put(upstream_bucket, f"{model_id}/{model.name}", data)
    manifest = {
        "name": "SmolLM2-135M-Instruct",
        "files": [{"path": model.name, "size": len(data), "sha256": digest}],
    }
    upstream_store.put(upstream_bucket, f"{model_id}/manifest.json", json.dumps(manifest).encode())

    response = admin.post(f"/download/{model_id}")
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "queued"

    job = wait_finished(admin, model_id)
    assert job["state"] == "ready", job
    assert job["bytes_done"] == job["bytes_total"] > len(data)
    assert job["progress"] == 1.0

    record = admin.get(f"/models/{model_id}").json()
    assert record["name"] == "SmolLM2-135M-Instruct"
    assert record["format"] == "gguf"
    assert record["verified"] is True
    assert record["architecture"] == "llama"
    assert record["context_length"] == 8192
    assert record["quantization"] == "Q4_1"
    assert record["parameters"] == 134_515_008
    assert record["source"] == f"s3://{upstream_bucket}/{model_id}/"
    assert record["storage_key"] == f"models/{model_id}/"
    files = {f["path"]: f["sha256"] for f in record["files"]}
    assert files[model.name] == digest
    assert record["sha256"] == folder_digest(files)
    assert [m["id"] for m in admin.get("/models").json()] == [model_id]

    copied = platform_store.contents(platform_bucket)
    assert copied[f"models/{model_id}/{model.name}"] == data
    assert sorted(copied) == sorted(
        [f"models/{model_id}/{model.name}", f"models/{model_id}/manifest.json"]
    )
    assert platform_store.open_uploads(platform_bucket, f"models/{model_id}/{model.name}") == []
