"""Models copied from the upstream store into the platform store by the real service."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.download.sources import folder_digest
from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.testing_operator import fetch_as_a_pod

pytestmark = [pytest.mark.postgres, pytest.mark.minio]


def test_smollm2_gguf_by_model_uuid(
    admin: httpx.Client,
    upstream_store: MinioServer,
    upstream_bucket: str,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
    tmp_path: Path,
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
    # One weights file (besides the manifest): the model is that file.
    assert record["storage_key"] == f"models/{model_id}/{model.name}"
    assert record["uri"] == f"s3://{platform_bucket}/models/{model_id}/{model.name}"
    assert record["sha256"] == digest
    assert {f["path"]: f["sha256"] for f in record["files"]}[model.name] == digest
    assert [m["id"] for m in admin.get("/models").json()] == [model_id]

    copied = platform_store.contents(platform_bucket)
    assert copied[f"models/{model_id}/{model.name}"] == data
    assert sorted(copied) == sorted(
        [f"models/{model_id}/{model.name}", f"models/{model_id}/manifest.json"]
    )
    assert platform_store.open_uploads(platform_bucket, f"models/{model_id}/{model.name}") == []

    # The record's uri is what a ModelServe names; its init step loads the file from it
    # with the URL and the digest (the object's tag) the operator gives it.
    fetched = fetch_as_a_pod(platform_store, record["uri"], tmp_path)
    assert fetched == [tmp_path / model.name]
    assert hashlib.sha256(fetched[0].read_bytes()).hexdigest() == digest


def test_folder_model_with_shards_tokenizer_and_config(
    admin: httpx.Client,
    upstream_store: MinioServer,
    upstream_bucket: str,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    files = {
        "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
        "tokenizer.json": json.dumps({"vocab": list(range(5000))}).encode(),
        "model-00001-of-00002.safetensors": os.urandom(7 << 20),
        "model-00002-of-00002.safetensors": os.urandom(11 << 20),
        "nested/empty.txt": b"",
    }
    digests = {}
    for path, data in files.items():
        # The producer vouches for one shard in its metadata, not for the others.
        sha256 = hashlib.sha256(data).hexdigest() if path.startswith("model-00001") else None
        digests[path] = upstream_store.put(
            upstream_bucket, f"org/llama-tiny/{path}", data, sha256=sha256
        )

    response = admin.post(
        "/downloads", json={"bucket": upstream_bucket, "prefix": "org/llama-tiny"}
    )
    assert response.status_code == 202, response.text
    model_id = response.json()["model_id"]
    job = wait_finished(admin, model_id)
    assert job["state"] == "ready", job
    assert job["files_done"] == job["files_total"] == 5

    record = admin.get(f"/models/{model_id}").json()
    assert record["name"] == "llama-tiny"
    assert record["format"] == "safetensors"
    assert record["size"] == sum(len(data) for data in files.values())
    assert record["verified"] is False  # not every file had a known checksum
    assert {f["path"]: f["sha256"] for f in record["files"]} == digests
    assert record["sha256"] == folder_digest(digests)
    assert record["uri"] == f"s3://{platform_bucket}/models/{model_id}/"
    assert record["architecture"] is None

    copied = platform_store.contents(platform_bucket)
    assert copied == {f"models/{model_id}/{path}": data for path, data in files.items()}
    fetched = fetch_as_a_pod(platform_store, record["uri"], tmp_path)
    assert {p.relative_to(tmp_path / "model").as_posix(): p.read_bytes() for p in fetched} == files

    # The same source again is the same model: nothing is copied twice.
    again = admin.post("/downloads", json={"bucket": upstream_bucket, "prefix": "org/llama-tiny/"})
    assert again.status_code == 200
    assert again.json()["model_id"] == model_id
    assert again.json()["attempts"] == 1


def test_corrupted_upstream_object_fails_and_leaves_nothing(
    admin: httpx.Client,
    upstream_store: MinioServer,
    upstream_bucket: str,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    data = os.urandom(12 << 20)
    good = hashlib.sha256(data).hexdigest()
    # What the producer vouched for, then one byte flipped in storage.
    corrupted = bytes([data[0] ^ 0xFF]) + data[1:]
    upstream_store.put(upstream_bucket, "quant/model.gguf", corrupted, sha256=good)

    response = admin.post("/downloads", json={"bucket": upstream_bucket, "key": "quant/model.gguf"})
    model_id = response.json()["model_id"]
    job = wait_finished(admin, model_id)
    assert job["state"] == "failed"
    assert job["error"]["code"] == "checksum_mismatch"
    assert good in job["error"]["message"]
    assert admin.get(f"/models/{model_id}").status_code == 404
    assert platform_store.contents(platform_bucket) == {}
    assert platform_store.open_uploads(platform_bucket, f"models/{model_id}/model.gguf") == []

    # A checksum given in the request is checked the same way.
    other = admin.post(
        "/downloads",
        json={
            "bucket": upstream_bucket,
            "key": "quant/model.gguf",
            "model_id": "with-request-checksum",
            "sha256": "0" * 64,
        },
    )
    job = wait_finished(admin, other.json()["model_id"])
    assert job["error"]["code"] == "checksum_mismatch"


def test_concurrent_duplicate_requests_do_the_work_once(
    admin: httpx.Client,
    upstream_store: MinioServer,
    upstream_bucket: str,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    model_id = "dup-model"
    upstream_store.put(upstream_bucket, f"{model_id}/weights.gguf", os.urandom(9 << 20))

    def ask(_: int) -> int:
        return admin.post(f"/download/{model_id}").status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(ask, range(16)))
    assert statuses == [200] * 15 + [202]

    job = wait_finished(admin, model_id)
    assert job["state"] == "ready"
    assert job["attempts"] == 1
    assert admin.post(f"/download/{model_id}").json()["state"] == "ready"
    assert list(platform_store.contents(platform_bucket)) == [f"models/{model_id}/weights.gguf"]
