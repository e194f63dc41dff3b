"""The gateway's registry routes, passed to the real download service as the caller
(real PostgreSQL and MinIO; bytes really PUT to the presigned URLs), and GET /models's
filters and pages."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_services import service_on_fresh_schema

pytestmark = [pytest.mark.postgres, pytest.mark.minio]

AsUser = Callable[..., httpx.Client]


@pytest.fixture
def registry_service(
    database_url: str,
    upstream_store: MinioServer,
    platform_store: MinioServer,
    platform_bucket: str,
    testbed_dir: Path,
    gateway_env: dict[str, str],
) -> Iterator[RunningService]:
    """A download service of its own (the session's `model_store` must keep its two
    records), trusting the gateway tests' tokens."""
    settings = {
        "JWT_SECRET": gateway_env["JWT_SECRET"],
        "DOWNLOAD_UPSTREAM_ENDPOINT": upstream_store.endpoint,
        "DOWNLOAD_UPSTREAM_ACCESS_KEY": upstream_store.access_key,
        "DOWNLOAD_UPSTREAM_SECRET_KEY": upstream_store.secret_key,
        "DOWNLOAD_PLATFORM_ENDPOINT": platform_store.endpoint,
        "DOWNLOAD_PLATFORM_ACCESS_KEY": platform_store.access_key,
        "DOWNLOAD_PLATFORM_SECRET_KEY": platform_store.secret_key,
        "DOWNLOAD_PLATFORM_BUCKET": platform_bucket,
        "DOWNLOAD_WORKER_ID": f"worker-{uuid.uuid4().hex[:6]}",
        "DOWNLOAD_PART_SIZE": str(5 << 20),
        "DOWNLOAD_POLL_SECONDS": "1",
    }
    with service_on_fresh_schema(
        "download", database_url, testbed_dir / "logs", settings, prefix="gateway_registry"
    ) as service:
        yield service


@pytest.fixture
def gateway(
    start_gateway: Callable[..., RunningService], registry_service: RunningService
) -> RunningService:
    return start_gateway(GATEWAY_DOWNLOAD_URL=registry_service.url)


def registered(client: httpx.Client, model_id: str) -> dict[str, Any]:
    """The registration's job once it ended, followed through the gateway."""

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/models/registrations/{model_id}").json()
        return job if job["state"] in ("ready", "failed", "cancelled") else None

    return wait_for(ended, timeout=120, what=f"the registration of {model_id}")


def test_register_a_copy_of_smollm2_through_the_gateway(
    gateway: RunningService,
    as_user: AsUser,
    platform_store: MinioServer,
    platform_bucket: str,
) -> None:
    model = ensure_runtime().model
    platform_store.client().fput_object(platform_bucket, "trainer/step-5000.gguf", str(model))
    alice = as_user(gateway, "alice")
    answer = alice.post(
        "/models/register",
        json={
            "id": "smol-step-5000",
            "name": "smol-trainee",
            "source": "4090",
            "tags": "step5000,math",
            "uri": f"s3://{platform_bucket}/trainer/step-5000.gguf",
        },
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["kind"] == "register"
    assert answer.json()["requested_by"] == "alice"  # the caller's token went through
    assert registered(alice, "smol-step-5000")["state"] == "ready"

    listed = alice.get("/models", params={"tag": "math"})
    assert listed.status_code == 200, listed.text
    (record,) = listed.json()
    assert listed.headers["X-Total-Count"] == "1"
    assert record["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert (record["name"], record["origin"], record["source_label"]) == (
        "smol-trainee",
        "register",
        "4090",
    )
    assert record["tags"] == ["step5000", "math"]
    assert record["architecture"] == "llama"

    # Refusals pass through with their status and code.
    for body, status, code in (
        ({"id": "smol-step-5000", "uri": record["uri"]}, 409, "model_exists"),
        ({"id": "x", "uri": record["uri"], "tags": "bad tag"}, 422, "invalid_tags"),
        ({"id": "x"}, 422, "invalid_checkpoint"),
        ({"id": "x", "uri": "s3://elsewhere/k.gguf"}, 422, "uri_outside_platform_store"),
        ({"id": "x", "uri": f"s3://{platform_bucket}/none.gguf"}, 422, "object_not_found"),
        ({"uri": record["uri"]}, 422, "invalid_request"),
    ):
        refused = alice.post("/models/register", json=body)
        assert refused.status_code == status, (body, refused.text)
        assert refused.json()["error"]["code"] == code
        assert refused.json()["error"]["message"]
    # Bob cannot see Alice's version: he may not copy it, nor follow it.
    bob = as_user(gateway, "bob")
    copied = bob.post("/models/register", json={"id": "bob-1", "uri": record["uri"]})
    assert copied.status_code == 403
    assert copied.json()["error"]["code"] == "source_not_visible"
    assert bob.get("/models/registrations/smol-step-5000").status_code == 404
    # The gateway lists downloads that the caller's contract allows, and of registered
    # versions only the caller's own: Bob's list has not Alice's checkpoint, Alice's has.
    assert [m["id"] for m in bob.get("/models").json()] == []
    assert [m["id"] for m in alice.get("/models").json()] == ["smol-step-5000"]


def test_uploads_through_the_gateway(
    gateway: RunningService, as_user: AsUser, platform_bucket: str
) -> None:
    alice, bob = as_user(gateway, "alice"), as_user(gateway, "bob")
    small = b"GGUF" + os.urandom(1000)
    upload = alice.post("/models/uploads", json={"filename": "s.gguf", "size": len(small)})
    assert upload.status_code == 201, upload.text
    assert httpx.put(upload.json()["url"], content=small).status_code == 200
    upload_id = upload.json()["upload_id"]
    done = alice.post(f"/models/uploads/{upload_id}/complete", json={})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "complete"

    large = os.urandom((5 << 20) + 100)
    opened = alice.post("/models/uploads", json={"filename": "l.gguf", "size": len(large)})
    big = opened.json()
    assert [p["part_number"] for p in big["parts"]] == [1, 2]
    assert len(alice.get(f"/models/uploads/{big['upload_id']}").json()["parts"]) == 2
    parts = []
    for part in big["parts"]:
        start = (part["part_number"] - 1) * big["part_size"]
        put = httpx.put(part["url"], content=large[start : start + big["part_size"]])
        assert put.status_code == 200, put.text
        parts.append({"part_number": part["part_number"], "etag": put.headers["ETag"]})
    refused = bob.post(f"/models/uploads/{big['upload_id']}/complete", json={"parts": parts})
    assert refused.status_code == 404  # another's upload is as unknown as none
    assert refused.json()["error"]["code"] == "upload_not_found"
    # A dot segment is no id: it would reach another route of the download service.
    for path in ("/models/uploads/%2E%2E", "/models/uploads/../complete"):
        odd = alice.get(path) if "complete" not in path else alice.post(path, json={})
        assert odd.status_code == 404, (path, odd.text)
    dots = alice.get("/models/uploads/%2E%2E")
    assert dots.json()["error"]["code"] == "upload_not_found"
    wrong = alice.post(f"/models/uploads/{big['upload_id']}/complete", json={"parts": parts[:1]})
    assert wrong.status_code == 422
    assert wrong.json()["error"]["code"] == "invalid_parts"
    joined = alice.post(f"/models/uploads/{big['upload_id']}/complete", json={"parts": parts})
    assert joined.json()["state"] == "complete"

    for model_id, upload_of in (("small-1", upload_id), ("large-1", big["upload_id"])):
        body = {"id": model_id, "name": "uploaded", "upload_id": upload_of}
        assert alice.post("/models/register", json=body).status_code == 202
        assert registered(alice, model_id)["state"] == "ready"
    records = {m["id"]: m for m in alice.get("/models", params={"name": "uploaded"}).json()}
    assert records["small-1"]["sha256"] == hashlib.sha256(small).hexdigest()
    assert records["large-1"]["sha256"] == hashlib.sha256(large).hexdigest()
    assert records["large-1"]["uri"] == f"s3://{platform_bucket}/models/large-1/l.gguf"

    for path in ("/models/uploads/nope", "/models/uploads/..%2F..%2Fmodels"):
        missing = alice.get(path)
        assert missing.status_code == 404, missing.text
    assert alice.get("/models/uploads/nope").json()["error"]["code"] == "upload_not_found"
    bad = alice.post("/models/uploads", json={"filename": "a/b", "size": 1})
    assert bad.json()["error"]["code"] == "invalid_filename"

    # An upload given up is deleted through the gateway too; a registered one is kept.
    dropped = alice.post("/models/uploads", json={"filename": "d.gguf", "size": 10}).json()
    assert bob.delete(f"/models/uploads/{dropped['upload_id']}").status_code == 404
    assert alice.delete(f"/models/uploads/{dropped['upload_id']}").status_code == 204
    assert alice.get(f"/models/uploads/{dropped['upload_id']}").status_code == 404
    kept = alice.delete(f"/models/uploads/{upload_id}")
    assert kept.status_code == 409, kept.text


def test_history_and_model_pages_through_the_gateway(
    gateway: RunningService,
    registry_service: RunningService,
    as_user: AsUser,
    platform_store: MinioServer,
    platform_bucket: str,
) -> None:
    platform_store.put(platform_bucket, "ck/a.gguf", b"GGUF-a")
    alice = as_user(gateway, "alice")
    for number in range(1, 5):
        tags = "even" if number % 2 == 0 else "odd"
        body = {
            "id": f"v{number}",
            "name": "trainee",
            "tags": tags,
            "uri": f"s3://{platform_bucket}/ck/a.gguf",
        }
        assert alice.post("/models/register", json=body).status_code == 202
        assert registered(alice, f"v{number}")["state"] == "ready"

    def ids(**params: Any) -> tuple[list[str], str]:
        answer = alice.get("/models", params=params)
        assert answer.status_code == 200, answer.text
        return [m["id"] for m in answer.json()], answer.headers["X-Total-Count"]

    assert ids() == (["v1", "v2", "v3", "v4"], "4")
    assert ids(tag="even") == (["v2", "v4"], "2")
    assert ids(limit=3, offset=1) == (["v2", "v3", "v4"], "4")
    assert ids(origin="download") == ([], "0")
    assert ids(name="other") == ([], "0")
    assert alice.get("/models", params={"limit": 0}).status_code == 422

    # set_active at the download service (the gateway's own route moves servers too).
    direct = as_user(registry_service, "alice")
    for model_id in ("v1", "v2", "v1"):
        assert direct.post("/models/set_active", json={"id": model_id}).status_code == 200
    history = alice.get("/models/history", params={"name": "trainee", "limit": 2})
    assert history.status_code == 200, history.text
    assert history.headers["X-Total-Count"] == "3"
    assert [(h["from_id"], h["to_id"]) for h in history.json()] == [("v2", "v1"), ("v1", "v2")]
    assert all(h["actor"] == "alice" and h["action"] == "set_active" for h in history.json())
    assert as_user(gateway, "bob").get("/models/history").json() == []


def test_without_a_download_service(
    start_gateway: Callable[..., RunningService],
    registry_service: RunningService,
    as_user: AsUser,
) -> None:
    unset = start_gateway()
    alice = as_user(unset, "alice")
    assert alice.get("/models").json() == []
    refused = alice.post("/models/register", json={"id": "x", "uri": "s3://b/k"})
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "registry_not_configured"

    gone = start_gateway(GATEWAY_DOWNLOAD_URL=registry_service.url)
    registry_service.stop()
    alice = as_user(gone, "alice")
    for answer in (
        alice.post("/models/register", json={"id": "x", "uri": "s3://b/k"}),
        alice.get("/models/history"),
        alice.get("/models"),
        alice.post("/models/uploads", json={"filename": "a.gguf", "size": 1}),
    ):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "download_unavailable"
