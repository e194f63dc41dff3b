"""Two real MinIO servers: the upstream store and the platform store."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from minio import Minio
from minio.error import S3Error

from modelserve.testbed.objectstores import PLATFORM_BUCKET, UPSTREAM_BUCKET, MinioServer


@pytest.mark.parametrize("store_fixture", ["upstream_store", "platform_store"])
def test_an_object_round_trips(store_fixture: str, request: pytest.FixtureRequest) -> None:
    store: MinioServer = request.getfixturevalue(store_fixture)
    client = store.client()
    payload = os.urandom(6 * 1024 * 1024)  # over one multipart part
    client.put_object(
        store.bucket, "models/blob.bin", io.BytesIO(payload), len(payload), part_size=5 * 2**20
    )
    response = client.get_object(store.bucket, "models/blob.bin")
    try:
        data = response.read()
    finally:
        response.close()
        response.release_conn()
    assert hashlib.sha256(data).digest() == hashlib.sha256(payload).digest()
    client.remove_object(store.bucket, "models/blob.bin")


def test_the_stores_have_their_buckets_and_separate_credentials(
    upstream_store: MinioServer, platform_store: MinioServer
) -> None:
    assert upstream_store.client().bucket_exists(UPSTREAM_BUCKET)
    assert platform_store.client().bucket_exists(PLATFORM_BUCKET)
    intruder = Minio(
        platform_store.endpoint,
        upstream_store.access_key,
        upstream_store.secret_key,
        secure=False,
    )
    with pytest.raises(S3Error) as refused:
        intruder.bucket_exists(PLATFORM_BUCKET)
    assert refused.value.code == "InvalidAccessKeyId"


def test_a_bucket_per_test_starts_empty(platform_store: MinioServer, platform_bucket: str) -> None:
    assert list(platform_store.client().list_objects(platform_bucket)) == []
