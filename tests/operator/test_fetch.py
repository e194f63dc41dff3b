"""The model fetch init step against the real platform MinIO."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelserve.operator.fetch import FetchError, fetch
from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.objectstores import MinioServer


def put(store: MinioServer, bucket: str, key: str, data: bytes) -> None:
    store.client().put_object(bucket, key, io.BytesIO(data), len(data))


def test_a_gguf_file_is_fetched_then_found_in_the_cache(
    platform_store: MinioServer, platform_bucket: str, tmp_path: Path
) -> None:
    gguf = ensure_runtime().model
    store = platform_store.client()
    store.fput_object(platform_bucket, "models/smollm2/model.gguf", str(gguf))
    uri = f"s3://{platform_bucket}/models/smollm2/model.gguf"

    written = fetch(store, uri, tmp_path)
    assert written == [tmp_path / "model.gguf"]
    assert (tmp_path / "model.gguf").read_bytes() == gguf.read_bytes()
    assert fetch(store, uri, tmp_path) == []  # a cache volume that has it: no download


def test_a_folder_model_keeps_its_layout(
    platform_store: MinioServer, platform_bucket: str, tmp_path: Path
) -> None:
    files = {
        "config.json": b"{}",
        "model-00001-of-00002.safetensors": os.urandom(1024),
        "tokenizer/tokenizer.json": b'{"v": 1}',
    }
    for name, data in files.items():
        put(platform_store, platform_bucket, f"models/qwen/{name}", data)
    fetch(platform_store.client(), f"s3://{platform_bucket}/models/qwen/", tmp_path)
    for name, data in files.items():
        assert (tmp_path / "model" / name).read_bytes() == data
    assert not list(tmp_path.rglob("*.partial"))


def test_a_missing_model_fails_with_the_reason(
    platform_store: MinioServer, platform_bucket: str, tmp_path: Path
) -> None:
    with pytest.raises(FetchError, match="NoSuchKey"):
        fetch(platform_store.client(), f"s3://{platform_bucket}/nope.gguf", tmp_path)
    with pytest.raises(FetchError, match="no objects under"):
        fetch(platform_store.client(), f"s3://{platform_bucket}/empty/", tmp_path)


def test_the_console_script_exits_non_zero_with_a_readable_line(
    platform_store: MinioServer, platform_bucket: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [Path(sys.executable).parent / "modelserve-fetch-model"],
        env={
            **os.environ,
            "MODEL_URI": f"s3://{platform_bucket}/missing.gguf",
            "MODEL_DIR": str(tmp_path),
            "MODEL_STORE_ENDPOINT": platform_store.endpoint,
            "MODEL_STORE_ACCESS_KEY": platform_store.access_key,
            "MODEL_STORE_SECRET_KEY": "wrong",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "fetch-model: cannot fetch" in result.stderr
    assert "SignatureDoesNotMatch" in result.stderr
