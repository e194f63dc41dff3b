"""Every stored file of a model carries the record's word on it (object tags), put there
before the record is ready; files stored before tags existed get them at start-up."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modelserve.common.store_tags import MODEL_ID_TAG, SHA256_TAG
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.minio]


def object_tags(store: MinioServer, bucket: str, key: str) -> dict[str, str]:
    tags = store.client().get_object_tags(bucket, key)
    return dict(tags or {})


def assert_tagged(store: MinioServer, bucket: str, record: dict[str, Any]) -> None:
    """Each stored file has both tags, and the digest tag is the SHA-256 of its bytes."""
    stored = store.contents(bucket, f"models/{record['id']}/")
    assert sorted(stored) == sorted(f"models/{record['id']}/{f['path']}" for f in record["files"])
    for key, data in stored.items():
        tags = object_tags(store, bucket, key)
        assert tags == {
            SHA256_TAG: hashlib.sha256(data).hexdigest(),
            MODEL_ID_TAG: record["id"],
        }, key


def test_single_file_and_folder_models_are_tagged(
    admin: httpx.Client,
    upstream_store: MinioServer,
    upstream_bucket: str,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    weights = os.urandom(6 << 20)
    upstream_store.put(upstream_bucket, "one/weights.gguf", weights)
    manifest = {
        "name": "one",
        "files": [
            {
                "path": "weights.gguf",
                "size": len(weights),
                "sha256": hashlib.sha256(weights).hexdigest(),
            }
        ],
    }
    upstream_store.put(upstream_bucket, "one/manifest.json", json.dumps(manifest).encode())
    for path, data in {"a.safetensors": os.urandom(1 << 20), "config.json": b"{}"}.items():
        upstream_store.put(upstream_bucket, f"folder/{path}", data)

    single = admin.post("/download/one")
    folder = admin.post("/downloads", json={"bucket": upstream_bucket, "prefix": "folder"})
    assert single.status_code == folder.status_code == 202, (single.text, folder.text)
    for model_id in ("one", folder.json()["model_id"]):
        assert wait_finished(admin, model_id)["state"] == "ready"
        record = admin.get(f"/models/{model_id}").json()
        assert_tagged(platform_store, platform_bucket, record)


def test_files_of_earlier_records_are_tagged_at_start(
    start_download: Callable[..., RunningService],
    client: Callable[..., httpx.Client],
    upstream_store: MinioServer,
    upstream_bucket: str,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    admin = client("root", roles=("admin",))
    upstream_store.put(upstream_bucket, "old/weights.gguf", os.urandom(2 << 20))
    assert admin.post("/download/old").status_code == 202
    assert wait_finished(admin, "old")["state"] == "ready"
    record = admin.get("/models/old").json()

    # As a file stored by a version of the service that put no tags on it.
    key = f"models/old/{record['files'][0]['path']}"
    platform_store.client().delete_object_tags(platform_bucket, key)
    assert object_tags(platform_store, platform_bucket, key) == {}

    # A second replica (a restarted service does the same) tags it from the record.
    start_download()
    wait_for(
        lambda: object_tags(platform_store, platform_bucket, key),
        timeout=60,
        what="the earlier record's file to be tagged",
    )
    assert_tagged(platform_store, platform_bucket, record)
