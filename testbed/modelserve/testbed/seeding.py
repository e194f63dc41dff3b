"""Models put in the upstream store as the producers of models would put them there."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from minio import Minio
from minio.commonconfig import Tags
from minio.error import S3Error

from modelserve.common.store_tags import MODEL_ID_TAG, SHA256_TAG
from modelserve.testbed.objectstores import PLATFORM_BUCKET, UPSTREAM_BUCKET, MinioServer

# The model the upstream store holds from the start, so that a first download needs no
# upload: uuid5(NAMESPACE_URL, "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct"),
# written out so that docs and scripts can name it.
SMOLLM2_MODEL_UUID = "ac04b7c6-f776-5cf1-a9d8-ac936e7357c1"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Where the download service puts it in the platform store (docs/examples/llamacpp-cpu.yaml).
SMOLLM2_PLATFORM_KEY = f"models/{SMOLLM2_MODEL_UUID}/{SMOLLM2_FILE}"


def _stored_size(client: Minio, bucket: str, key: str) -> int | None:
    try:
        size = client.stat_object(bucket, key).size
    except S3Error as error:
        if error.code == "NoSuchKey":
            return None
        raise
    return size


def seed_smollm2(store: MinioServer, model: Path, bucket: str = UPSTREAM_BUCKET) -> bool:
    """Put the SmolLM2 GGUF `model` and a manifest.json naming it under
    `<SMOLLM2_MODEL_UUID>/` of `bucket`, as the upstream store holds a model.

    False, and nothing written, where both are there already with the model's size.
    """
    client = store.client()
    folder = f"{SMOLLM2_MODEL_UUID}/"
    size = model.stat().st_size
    if (
        _stored_size(client, bucket, folder + model.name) == size
        and _stored_size(client, bucket, folder + "manifest.json") is not None
    ):
        return False
    with model.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    metadata: dict[str, str | list[str] | tuple[str]] = {"sha256": digest}
    client.fput_object(bucket, folder + model.name, str(model), metadata=metadata)
    manifest = {
        "name": SMOLLM2_NAME,
        "format": "gguf",
        "files": [{"path": model.name, "size": size, "sha256": digest}],
    }
    store.put(bucket, folder + "manifest.json", json.dumps(manifest, indent=2).encode())
    return True


def tag_as_recorded(client: Minio, bucket: str, key: str, sha256: str, model_id: str) -> None:
    """The tags the download service puts on each file it stores (common/store_tags.py):
    without them the operator serves nothing from the object."""
    tags = Tags.new_object_tags()
    tags[SHA256_TAG] = sha256
    tags[MODEL_ID_TAG] = model_id
    client.set_object_tags(bucket, key, tags)


def record_config_only(store: MinioServer, uri: str, model_id: str) -> None:
    """A model under the s3:// prefix `uri` in `store` as a download leaves it, with one
    small file (config.json, tagged with its digest): enough for the operator to serve it
    on KWOK nodes, where the pods never read it."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    data = b"{}"
    client = store.client()
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    client.put_object(bucket, f"{prefix}config.json", io.BytesIO(data), len(data))
    digest = hashlib.sha256(data).hexdigest()
    tag_as_recorded(client, bucket, f"{prefix}config.json", digest, model_id)


def place_smollm2(store: MinioServer, model: Path, bucket: str = PLATFORM_BUCKET) -> str:
    """Put the SmolLM2 GGUF where a download would have left it in the platform store, with
    the download service's tags, for tests of serving that do not test downloading; its
    s3:// URI."""
    client = store.client()
    if _stored_size(client, bucket, SMOLLM2_PLATFORM_KEY) != model.stat().st_size:
        client.fput_object(bucket, SMOLLM2_PLATFORM_KEY, str(model))
    with model.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    tag_as_recorded(client, bucket, SMOLLM2_PLATFORM_KEY, digest, SMOLLM2_MODEL_UUID)
    return f"s3://{bucket}/{SMOLLM2_PLATFORM_KEY}"


def place_model_version(
    store: MinioServer,
    model: Path,
    model_id: str,
    *,
    keep_bytes: int | None = None,
    bucket: str = PLATFORM_BUCKET,
) -> str:
    """A copy of `model` stored as version `model_id` (`models/<id>/<file>`), tagged as the
    download service and the registry tag what they record; with `keep_bytes`, only its
    first bytes: a corrupt checkpoint whose header reads but whose weights are cut short.
    Its s3:// URI."""
    data = model.read_bytes()
    if keep_bytes is not None:
        data = data[:keep_bytes]
    key = f"models/{model_id}/{model.name}"
    client = store.client()
    client.put_object(bucket, key, io.BytesIO(data), len(data))
    tag_as_recorded(client, bucket, key, hashlib.sha256(data).hexdigest(), model_id)
    return f"s3://{bucket}/{key}"
