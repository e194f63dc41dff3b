"""Uploading a checkpoint by presigned URLs (one PUT, or an S3 multipart upload) and
registering it, on the real service and MinIO: the bytes really go to the URLs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modelserve.common.store_tags import SHA256_TAG
from modelserve.common.tokens import TokenSigner
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService
from modelserve.testbed.testing_clients import token_clients

pytestmark = [pytest.mark.postgres, pytest.mark.minio]

Wait = Callable[..., dict[str, Any]]
PART = 5 << 20  # DOWNLOAD_PART_SIZE in the tests


def put_all(upload: dict[str, Any], data: bytes) -> list[dict[str, Any]]:
    """PUT `data` to the upload's URLs as a client would; the parts to complete with."""
    if upload["url"] is not None:
        answer = httpx.put(upload["url"], content=data, timeout=60)
        assert answer.status_code == 200, answer.text
        return []
    size, completed = upload["part_size"], []
    for part in upload["parts"]:
        start = (part["part_number"] - 1) * size
        answer = httpx.put(part["url"], content=data[start : start + size], timeout=60)
        assert answer.status_code == 200, answer.text
        completed.append({"part_number": part["part_number"], "etag": answer.headers["ETag"]})
    return completed


def test_a_small_file_uploads_by_one_presigned_put_then_registers(
    admin: httpx.Client,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Wait,
) -> None:
    data = b"GGUF" + os.urandom(100_000)
    opened = admin.post("/models/uploads", json={"filename": "ckpt.gguf", "size": len(data)})
    assert opened.status_code == 201, opened.text
    upload = opened.json()
    assert upload["state"] == "open"
    assert upload["parts"] == [] and upload["part_size"] is None
    assert upload["url"].startswith(platform_store.url)  # the endpoint clients reach
    upload_id = upload["upload_id"]
    assert upload["uri"] == f"s3://{platform_bucket}/uploads/{upload_id}/ckpt.gguf"

    # Not there yet: neither complete nor registrable.
    early = admin.post(f"/models/uploads/{upload_id}/complete", json={})
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "upload_not_received"
    refused = admin.post("/models/register", json={"id": "up-1", "upload_id": upload_id})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "upload_not_complete"

    put_all(upload, data)
    done = admin.post(f"/models/uploads/{upload_id}/complete", json={})
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["size"], done.json()["url"]) == (
        "complete",
        len(data),
        None,
    )
    again = admin.post(f"/models/uploads/{upload_id}/complete", json={})
    assert again.json()["state"] == "complete"

    registered = admin.post(
        "/models/register", json={"id": "up-1", "upload_id": upload_id, "tags": "uploaded"}
    )
    assert registered.status_code == 202, registered.text
    assert wait_finished(admin, "up-1")["state"] == "ready"
    record = admin.get("/models/up-1").json()
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["uri"] == f"s3://{platform_bucket}/models/up-1/ckpt.gguf"
    assert record["tags"] == ["uploaded"]
    assert admin.get(f"/models/uploads/{upload_id}").json()["registered_as"] == "up-1"
    # The staging copy is gone; the version's copy stays.
    assert list(platform_store.contents(platform_bucket, "uploads/")) == []
    assert list(platform_store.contents(platform_bucket, "models/up-1/")) == [
        "models/up-1/ckpt.gguf"
    ]
    twice = admin.post("/models/register", json={"id": "up-2", "upload_id": upload_id})
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "upload_registered"


def test_a_large_file_uploads_in_parts_then_registers(
    client: Callable[..., httpx.Client],
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Wait,
) -> None:
    alice, bob = client("alice"), client("bob")
    data = os.urandom(2 * PART + 12345)
    upload = alice.post("/models/uploads", json={"filename": "big.gguf", "size": len(data)}).json()
    assert upload["url"] is None
    assert upload["part_size"] == PART
    assert [p["part_number"] for p in upload["parts"]] == [1, 2, 3]
    upload_id = upload["upload_id"]
    # The URLs can be signed again (they expire).
    assert len(alice.get(f"/models/uploads/{upload_id}").json()["parts"]) == 3

    parts = put_all(upload, data)
    # Only the uploader (or an admin) completes or registers it.
    # Another user's upload is as unknown to bob as one that does not exist: 404, no name.
    unknown = bob.get(f"/models/uploads/{'0' * 32}").json()
    other = bob.post(f"/models/uploads/{upload_id}/complete", json={"parts": parts})
    assert other.status_code == 404
    assert other.json()["error"]["code"] == unknown["error"]["code"] == "upload_not_found"
    assert "alice" not in other.text
    read = bob.get(f"/models/uploads/{upload_id}")
    assert (read.status_code, read.json()["error"]["code"]) == (404, "upload_not_found")
    for wrong in (parts[:2], [*parts, {"part_number": 4, "etag": "x"}], [parts[0]] * 3):
        refused = alice.post(f"/models/uploads/{upload_id}/complete", json={"parts": wrong})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "invalid_parts"
    bad_etag = [parts[0], parts[1], {"part_number": 3, "etag": '"0123"'}]
    refused = alice.post(f"/models/uploads/{upload_id}/complete", json={"parts": bad_etag})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "upload_not_completed"

    done = alice.post(f"/models/uploads/{upload_id}/complete", json={"parts": parts[::-1]})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "complete"
    taken = bob.post("/models/register", json={"id": "big-1", "upload_id": upload_id})
    assert (taken.status_code, taken.json()["error"]["code"]) == (404, "upload_not_found")
    registered = alice.post(
        "/models/register", json={"id": "big-1", "name": "big", "upload_id": upload_id}
    )
    assert registered.status_code == 202, registered.text
    assert wait_finished(alice, "big-1")["state"] == "ready"
    record = alice.get("/models/big-1").json()
    digest = hashlib.sha256(data).hexdigest()
    assert (record["sha256"], record["size"], record["requested_by"]) == (
        digest,
        len(data),
        "alice",
    )
    key = "models/big-1/big.gguf"
    assert (
        dict(platform_store.client().get_object_tags(platform_bucket, key) or {})[SHA256_TAG]
        == digest
    )
    assert platform_store.contents(platform_bucket, key)[key] == data


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"filename": "a/b.gguf", "size": 10}, "invalid_filename"),
        ({"filename": "..", "size": 10}, "invalid_filename"),
        ({"filename": "", "size": 10}, "invalid_filename"),
        ({"filename": "a.gguf", "size": 0}, "invalid_request"),
        ({"filename": "a.gguf", "size": 6 << 40}, "invalid_request"),
        ({"filename": "a.gguf"}, "invalid_request"),
    ],
)
def test_bad_uploads_are_refused(admin: httpx.Client, body: dict[str, Any], code: str) -> None:
    answer = admin.post("/models/uploads", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == code


def test_unknown_uploads(admin: httpx.Client) -> None:
    for path in ("/models/uploads/nope", f"/models/uploads/{'a' * 32}"):
        answer = admin.get(path)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "upload_not_found"
        completed = admin.post(f"{path}/complete", json={})
        assert completed.json()["error"]["code"] == "upload_not_found"


def test_an_upload_of_another_size_than_declared_stays_open(
    admin: httpx.Client, platform_store: MinioServer, platform_bucket: str
) -> None:
    data = b"GGUF" + os.urandom(1000)
    upload = admin.post("/models/uploads", json={"filename": "a.gguf", "size": len(data)}).json()
    upload_id = upload["upload_id"]
    put_all(upload, data[:-10])
    short = admin.post(f"/models/uploads/{upload_id}/complete", json={})
    assert short.status_code == 422, short.text
    assert short.json()["error"]["code"] == "upload_size_mismatch"
    assert admin.get(f"/models/uploads/{upload_id}").json()["state"] == "open"
    refused = admin.post("/models/register", json={"id": "short", "upload_id": upload_id})
    assert refused.json()["error"]["code"] == "upload_not_complete"
    put_all(upload, data)
    done = admin.post(f"/models/uploads/{upload_id}/complete", json={})
    assert (done.status_code, done.json()["size"]) == (200, len(data))

    # In parts: the parts joined are dropped, and new part URLs are signed.
    big = os.urandom(PART + 100)
    upload = admin.post("/models/uploads", json={"filename": "b.gguf", "size": len(big)}).json()
    upload_id = upload["upload_id"]
    parts = put_all(upload, big + b"extra")
    long = admin.post(f"/models/uploads/{upload_id}/complete", json={"parts": parts})
    assert long.status_code == 422, long.text
    assert long.json()["error"]["code"] == "upload_size_mismatch"
    assert list(platform_store.contents(platform_bucket, f"uploads/{upload_id}/")) == []
    again = admin.get(f"/models/uploads/{upload_id}").json()
    assert again["state"] == "open"
    parts = put_all(again, big)
    done = admin.post(f"/models/uploads/{upload_id}/complete", json={"parts": parts})
    assert (done.status_code, done.json()["size"]) == (200, len(big)), done.text


def test_a_user_has_a_bounded_number_of_open_uploads(
    start_download: Callable[..., RunningService], signer: TokenSigner
) -> None:
    service = start_download(DOWNLOAD_MAX_OPEN_UPLOADS="2")
    with token_clients(signer) as make:
        alice, admin = make(service.url, "alice", ()), make(service.url, "root", ("admin",))
        body = {"filename": "a.gguf", "size": 10}
        opened = [alice.post("/models/uploads", json=body) for _ in range(2)]
        assert [answer.status_code for answer in opened] == [201, 201]
        refused = alice.post("/models/uploads", json=body)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_uploads"
        assert all(admin.post("/models/uploads", json=body).status_code == 201 for _ in range(3))
        # Deleting one (or completing it) makes room.
        first = opened[0].json()["upload_id"]
        assert alice.delete(f"/models/uploads/{first}").status_code == 204
        assert alice.get(f"/models/uploads/{first}").status_code == 404
        assert alice.post("/models/uploads", json=body).status_code == 201


def test_an_upload_whose_registration_failed_registers_again(
    client: Callable[..., httpx.Client],
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Wait,
) -> None:
    alice, bob = client("alice"), client("bob")
    platform_store.put(platform_bucket, "ck/a.gguf", b"GGUF" + bytes(16))
    body = {"id": "a-1", "name": "taken", "uri": f"s3://{platform_bucket}/ck/a.gguf"}
    assert alice.post("/models/register", json=body).status_code == 202
    assert wait_finished(alice, "a-1")["state"] == "ready"

    data = b"not a gguf" + os.urandom(100)
    upload = bob.post("/models/uploads", json={"filename": "b.bin", "size": len(data)}).json()
    put_all(upload, data)
    upload_id = upload["upload_id"]
    assert bob.post(f"/models/uploads/{upload_id}/complete", json={}).status_code == 200
    # Named by its id, "taken": Alice's name, so the job fails.
    assert (
        bob.post("/models/register", json={"id": "taken", "upload_id": upload_id}).status_code
        == 202
    )
    assert wait_finished(bob, "taken")["error"]["code"] == "name_not_yours"
    again = bob.post("/models/register", json={"id": "b-1", "upload_id": upload_id})
    assert again.status_code == 202, again.text
    assert wait_finished(bob, "b-1")["state"] == "ready"
    assert bob.get(f"/models/uploads/{upload_id}").json()["registered_as"] == "b-1"
    twice = bob.post("/models/register", json={"id": "b-2", "upload_id": upload_id})
    assert twice.json()["error"]["code"] == "upload_registered"
