"""The model fetch init step against the real platform MinIO, with the URLs and digests
the operator gives it (and nothing else of the store)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelserve.operator.fetch import FetchError, fetch, parse_files
from modelserve.operator.settings import OperatorSettings
from modelserve.operator.store import ModelRefused, ModelStore
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.seeding import tag_as_recorded


def put(store: MinioServer, bucket: str, key: str, data: bytes, *, digest: str | None = "") -> None:
    """An object as the download service leaves it: tagged with its SHA-256 (or `digest`;
    None: untagged)."""
    store.client().put_object(bucket, key, io.BytesIO(data), len(data))
    if digest is not None:
        recorded = digest or hashlib.sha256(data).hexdigest()
        tag_as_recorded(store.client(), bucket, key, recorded, "model-1")


def model_store(platform_store: MinioServer, **settings: object) -> ModelStore:
    given = {
        "model_store_endpoint": platform_store.endpoint,
        "model_store_access_key": platform_store.access_key,
        "model_store_secret_key": platform_store.secret_key,
        **settings,
    }
    return ModelStore(OperatorSettings.model_validate(given))


def files_of(store: ModelStore, uri: str) -> str:
    return store.presign(uri, store.resolve(uri))


def run_fetch(files: str, uri: str, model_dir: Path) -> list[Path]:
    with httpx.Client(follow_redirects=False) as http:
        return fetch(http, uri, parse_files(files, model_dir), model_dir)


def test_a_file_is_fetched_verified_then_found_in_the_cache(
    platform_store: MinioServer, platform_bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(3 * 2**20 + 17)
    put(platform_store, platform_bucket, "models/m1/model.gguf", data)
    uri = f"s3://{platform_bucket}/models/m1/model.gguf"
    files = files_of(model_store(platform_store), uri)

    assert run_fetch(files, uri, tmp_path) == [tmp_path / "model.gguf"]
    assert (tmp_path / "model.gguf").read_bytes() == data
    assert run_fetch(files, uri, tmp_path) == []  # a cache volume that has it: no download


def test_a_folder_model_keeps_its_layout(
    platform_store: MinioServer, platform_bucket: str, tmp_path: Path
) -> None:
    content = {
        "config.json": b"{}",
        "model-00001-of-00002.safetensors": os.urandom(1024),
        "tokenizer/tokenizer.json": b'{"v": 1}',
    }
    for name, data in content.items():
        put(platform_store, platform_bucket, f"models/qwen/{name}", data)
    uri = f"s3://{platform_bucket}/models/qwen/"
    run_fetch(files_of(model_store(platform_store), uri), uri, tmp_path)
    for name, data in content.items():
        assert (tmp_path / "model" / name).read_bytes() == data
    assert not list(tmp_path.rglob("*.partial"))


def test_bytes_other_than_the_recorded_ones_are_refused(
    platform_store: MinioServer, platform_bucket: str, tmp_path: Path
) -> None:
    data = b"the weights the download service verified"
    put(platform_store, platform_bucket, "models/m2/model.gguf", b"other bytes", digest=None)
    tag_as_recorded(
        platform_store.client(),
        platform_bucket,
        "models/m2/model.gguf",
        hashlib.sha256(data).hexdigest(),
        "model-2",
    )
    uri = f"s3://{platform_bucket}/models/m2/model.gguf"
    with pytest.raises(FetchError, match=r"refusing model\.gguf: its SHA-256 is"):
        run_fetch(files_of(model_store(platform_store), uri), uri, tmp_path)
    assert not list(tmp_path.iterdir())  # neither the file, nor a .partial, nor a marker


def test_an_object_without_a_recorded_digest_or_no_object_is_refused(
    platform_store: MinioServer, platform_bucket: str
) -> None:
    put(platform_store, platform_bucket, "models/m3/model.gguf", b"by hand", digest=None)
    store = model_store(platform_store)
    with pytest.raises(ModelRefused, match="not a recorded download"):
        store.resolve(f"s3://{platform_bucket}/models/m3/model.gguf")
    with pytest.raises(ModelRefused, match="NoSuchKey"):
        store.resolve(f"s3://{platform_bucket}/nope.gguf")
    with pytest.raises(ModelRefused, match="no objects under"):
        store.resolve(f"s3://{platform_bucket}/empty/")


def test_urls_are_signed_offline_for_the_pods_endpoint(
    platform_store: MinioServer, platform_bucket: str
) -> None:
    """The signing client is built for where pods reach the store; it never dials it."""
    put(platform_store, platform_bucket, "models/m4/model.gguf", b"x")
    store = model_store(
        platform_store,
        model_store_endpoint="minio.unreachable.invalid:9000",
        model_store_read_endpoint=platform_store.endpoint,
        model_url_expiry_seconds=600,
        model_url_refresh_seconds=60,
    )
    uri = f"s3://{platform_bucket}/models/m4/model.gguf"
    (file,) = json.loads(files_of(store, uri))["files"]
    assert file["url"].startswith(f"http://minio.unreachable.invalid:9000/{platform_bucket}/")
    assert "X-Amz-Expires=600" in file["url"]
    assert platform_store.secret_key not in file["url"]


def test_the_console_script_exits_non_zero_with_a_readable_line(
    platform_store: MinioServer, platform_bucket: str, tmp_path: Path
) -> None:
    """An expired (here: tampered) URL: the store's code, never the URL with its signature."""
    put(platform_store, platform_bucket, "models/m5/model.gguf", b"y")
    uri = f"s3://{platform_bucket}/models/m5/model.gguf"
    listing = json.loads(files_of(model_store(platform_store), uri))
    url = listing["files"][0]["url"]
    listing["files"][0]["url"] = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    result = subprocess.run(
        [Path(sys.executable).parent / "modelserve-fetch-model"],
        env={
            **os.environ,
            "MODEL_URI": uri,
            "MODEL_DIR": str(tmp_path),
            "MODEL_FILES": json.dumps(listing),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == "fetch-model: cannot fetch model.gguf: 403 SignatureDoesNotMatch"


def test_paths_that_leave_the_model_folder_are_refused(tmp_path: Path) -> None:
    for path in ("../etc/passwd", "/etc/passwd"):
        listing = {"files": [{"path": path, "sha256": "0" * 64, "url": "http://x/"}]}
        with pytest.raises(FetchError, match="would leave"):
            parse_files(json.dumps(listing), tmp_path)
