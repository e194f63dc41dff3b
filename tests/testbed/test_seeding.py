"""The stack's seed: the upstream store holds SmolLM2 under a fixed model UUID."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.seeding import SMOLLM2_MODEL_UUID, SMOLLM2_NAME, seed_smollm2

pytestmark = pytest.mark.minio


def test_the_documented_uuid_is_the_one_derived_from_the_model() -> None:
    source = "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct"
    assert str(uuid.uuid5(uuid.NAMESPACE_URL, source)) == SMOLLM2_MODEL_UUID


def test_seed_puts_the_model_and_its_manifest_once(
    upstream_store: MinioServer, upstream_bucket: str, tmp_path: Path
) -> None:
    # A stand-in for the GGUF: the real one is 98 MB, and the stack's test copies it.
    model = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()

    assert seed_smollm2(upstream_store, model, upstream_bucket) is True

    stored = upstream_store.contents(upstream_bucket)
    folder = f"{SMOLLM2_MODEL_UUID}/"
    assert sorted(stored) == [folder + model.name, folder + "manifest.json"]
    assert stored[folder + model.name] == model.read_bytes()
    assert json.loads(stored[folder + "manifest.json"]) == {
        "name": SMOLLM2_NAME,
        "format": "gguf",
        "files": [{"path": model.name, "size": model.stat().st_size, "sha256": digest}],
    }
    metadata = upstream_store.client().stat_object(upstream_bucket, folder + model.name).metadata
    assert metadata is not None
    assert metadata["x-amz-meta-sha256"] == digest

    assert seed_smollm2(upstream_store, model, upstream_bucket) is False


def test_seed_replaces_a_model_of_another_size(
    upstream_store: MinioServer, upstream_bucket: str, tmp_path: Path
) -> None:
    model = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model.write_bytes(b"GGUF old")
    seed_smollm2(upstream_store, model, upstream_bucket)
    model.write_bytes(b"GGUF new and longer")

    assert seed_smollm2(upstream_store, model, upstream_bucket) is True

    stored = upstream_store.contents(upstream_bucket, f"{SMOLLM2_MODEL_UUID}/")
    assert stored[f"{SMOLLM2_MODEL_UUID}/{model.name}"] == b"GGUF new and longer"
