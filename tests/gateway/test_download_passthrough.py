"""The gateway's downloads (registry/downloads.py), passed to the real download service as
the caller: its upstream MinIO holds SmolLM2 as the seeds' store does, the contract
service decides users' downloads, and answers and refusals come back as the download
service gave them."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import SMOLLM2_MODEL_UUID, SMOLLM2_NAME, seed_smollm2
from modelserve.testbed.testing_services import service_on_fresh_schema

pytestmark = [pytest.mark.postgres, pytest.mark.minio]

AsUser = Callable[..., httpx.Client]
ENDED = ("ready", "failed", "cancelled")
# Big enough, copied one 5 MiB part at a time, to be cancelled in the middle.
BIG = 160 << 20


@pytest.fixture
def smollm2_upstream(upstream_store: MinioServer, upstream_bucket: str) -> str:
    """An upstream bucket holding SmolLM2 under its model UUID, with its manifest."""
    seed_smollm2(upstream_store, ensure_runtime().model, bucket=upstream_bucket)
    return upstream_bucket


@pytest.fixture
def download_service(
    database_url: str,
    upstream_store: MinioServer,
    smollm2_upstream: str,
    platform_store: MinioServer,
    platform_bucket: str,
    module_contract: RunningService,
    testbed_dir: Path,
    gateway_env: dict[str, str],
) -> Iterator[RunningService]:
    """A download service of its own that asks the contract service about users' downloads
    and copies one part at a time (so that a copy can be caught in the middle)."""
    settings = {
        "JWT_SECRET": gateway_env["JWT_SECRET"],
        "DOWNLOAD_UPSTREAM_ENDPOINT": upstream_store.endpoint,
        "DOWNLOAD_UPSTREAM_ACCESS_KEY": upstream_store.access_key,
        "DOWNLOAD_UPSTREAM_SECRET_KEY": upstream_store.secret_key,
        "DOWNLOAD_UPSTREAM_BUCKETS": smollm2_upstream,
        "DOWNLOAD_PLATFORM_ENDPOINT": platform_store.endpoint,
        "DOWNLOAD_PLATFORM_ACCESS_KEY": platform_store.access_key,
        "DOWNLOAD_PLATFORM_SECRET_KEY": platform_store.secret_key,
        "DOWNLOAD_PLATFORM_BUCKET": platform_bucket,
        "DOWNLOAD_CONTRACT_URL": module_contract.url,
        "DOWNLOAD_WORKER_ID": f"worker-{uuid.uuid4().hex[:6]}",
        "DOWNLOAD_PART_SIZE": str(5 << 20),
        "DOWNLOAD_PARALLEL_PARTS": "1",
        "DOWNLOAD_POLL_SECONDS": "1",
    }
    with service_on_fresh_schema(
        "download", database_url, testbed_dir / "logs", settings, prefix="gateway_downloads"
    ) as service:
        yield service


@pytest.fixture
def gateway(
    start_gateway: Callable[..., RunningService], download_service: RunningService
) -> RunningService:
    return start_gateway(GATEWAY_DOWNLOAD_URL=download_service.url)


def allow_downloads(
    contract: RunningService, signer: TokenSigner, user: str, models: list[str]
) -> None:
    root = signer.sign("root", roles=("admin",))
    answer = httpx.put(
        f"{contract.url}/contracts/user/{user}",
        json={"downloads": True, "models": models},
        headers={"Authorization": f"Bearer {root}"},
    )
    assert answer.status_code == 200, answer.text


def followed(client: httpx.Client, model_id: str) -> list[dict[str, Any]]:
    """Every answer of `GET /downloads/{id}` through the gateway until the job ended."""
    seen: list[dict[str, Any]] = []

    def ended() -> bool:
        answer = client.get(f"/downloads/{model_id}")
        assert answer.status_code == 200, answer.text
        seen.append(answer.json())
        return bool(seen[-1]["state"] in ENDED)

    wait_for(ended, timeout=120, interval=0.1, what=f"the download of {model_id}")
    return seen


def refused(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code, answer.text
    assert answer.json()["error"]["message"]


def test_an_admin_downloads_smollm2_through_the_gateway(
    gateway: RunningService, as_user: AsUser
) -> None:
    admin = as_user(gateway, "root", roles=("admin",))
    started = admin.post(f"/download/{SMOLLM2_MODEL_UUID}")
    assert started.status_code == 202, started.text
    job = started.json()
    assert (job["model_id"], job["kind"], job["requested_by"]) == (
        SMOLLM2_MODEL_UUID,
        "download",
        "root",  # the caller's token went through, not the gateway's
    )
    seen = followed(admin, SMOLLM2_MODEL_UUID)
    done = seen[-1]
    assert done["state"] == "ready", done
    assert done["error"] is None
    size = ensure_runtime().model.stat().st_size
    assert done["bytes_total"] > size  # the GGUF and its manifest
    assert done["bytes_done"] == done["bytes_total"]
    assert done["progress"] == 1.0
    assert done["files_done"] == done["files_total"] == 2
    # Progress as the service reports it: bytes and files (and rate, ETA) while running.
    assert {"rate_bytes_per_second", "eta_seconds", "attempts"} <= set(done)

    # Asking again answers 200 with the same job; the list has it; the record is there.
    again = admin.post(f"/download/{SMOLLM2_MODEL_UUID}", json={})
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "ready"
    listed = admin.get("/downloads")
    assert listed.status_code == 200, listed.text
    assert [j["model_id"] for j in listed.json()] == [SMOLLM2_MODEL_UUID]
    assert [j["model_id"] for j in admin.get("/downloads?state=ready&limit=1").json()] == [
        SMOLLM2_MODEL_UUID
    ]
    assert admin.get("/downloads?state=failed").json() == []
    records = admin.get("/models", params={"name": SMOLLM2_NAME}).json()
    assert [(r["id"], r["origin"]) for r in records] == [(SMOLLM2_MODEL_UUID, "download")]
    digest = hashlib.sha256(ensure_runtime().model.read_bytes()).hexdigest()
    assert records[0]["sha256"] == digest
    assert records[0]["verified"] is True

    # The download service's refusals, status and code kept.
    refused(admin.post(f"/downloads/{SMOLLM2_MODEL_UUID}/cancel"), 409, "not_running")
    refused(admin.post(f"/downloads/{SMOLLM2_MODEL_UUID}/retry"), 409, "not_finished")
    refused(admin.get("/downloads/nothing-here"), 404, "download_not_found")
    refused(admin.post("/downloads/nothing-here/cancel"), 404, "download_not_found")
    refused(admin.post("/downloads", json={"key": "a", "prefix": "b/"}), 422, "invalid_source")
    refused(admin.post("/downloads", json={"bucket": "elsewhere", "key": "m.gguf"}), 422,
            "bucket_not_allowed")  # fmt: skip
    refused(admin.get("/downloads?state=sleeping"), 422, "invalid_request")
    refused(admin.get("/downloads?limit=0"), 422, "invalid_request")


def raw(gateway: RunningService, client: httpx.Client, method: str, path: str) -> dict[str, Any]:
    """Status and error of `path` sent as it is: httpx would resolve its dot segments."""
    connection = http.client.HTTPConnection(
        httpx.URL(gateway.url).host, httpx.URL(gateway.url).port
    )
    try:
        connection.request(method, path, headers={"Authorization": client.headers["authorization"]})
        answer = connection.getresponse()
        return {"status": answer.status, **json.loads(answer.read())["error"]}
    finally:
        connection.close()


def test_dot_segments_reach_no_other_route(gateway: RunningService, as_user: AsUser) -> None:
    """`.` and `..` as a job's id are answered as ids no job can have, not passed on as a
    path that the client would resolve (`/download/./cancel` is `/download/cancel`: a
    download of the folder `cancel/`)."""
    admin = as_user(gateway, "root", roles=("admin",))
    for method, path, status, code in (
        ("POST", "/downloads/./cancel", 404, "download_not_found"),
        ("POST", "/downloads/../retry", 404, "download_not_found"),
        ("GET", "/downloads/..", 404, "download_not_found"),
        ("POST", "/download/.", 422, "invalid_model_id"),
        ("POST", "/download/..", 422, "invalid_model_id"),
    ):
        answer = raw(gateway, admin, method, path)
        assert (answer["status"], answer["code"]) == (status, code), (path, answer)
    assert admin.get("/downloads").json() == []


def test_users_download_what_their_contract_allows_and_see_only_their_own(
    gateway: RunningService,
    as_user: AsUser,
    module_contract: RunningService,
    signer: TokenSigner,
) -> None:
    alice, bob = as_user(gateway, "alice"), as_user(gateway, "bob")
    source = {"prefix": f"{SMOLLM2_MODEL_UUID}/", "model_id": "alice-smol", "name": "Alice's"}
    # The contract service decides, asked with alice's own token: the gateway adds nothing.
    allow_downloads(module_contract, signer, "alice", ["smollm2*"])
    refused(alice.post("/downloads", json=source), 403, "model_not_allowed")
    allow_downloads(module_contract, signer, "alice", [SMOLLM2_MODEL_UUID])
    started = alice.post("/downloads", json=source)
    assert started.status_code == 202, started.text
    assert started.json()["requested_by"] == "alice"
    assert followed(alice, "alice-smol")[-1]["state"] == "ready"
    assert [j["model_id"] for j in alice.get("/downloads").json()] == ["alice-smol"]

    # Bob's contract does not let him download; alice's download is not his to see.
    refused(bob.post(f"/download/{SMOLLM2_MODEL_UUID}"), 403, "downloads_not_allowed")
    assert bob.get("/downloads").json() == []
    refused(bob.get("/downloads/alice-smol"), 404, "download_not_found")
    for action in ("cancel", "retry"):
        refused(bob.post(f"/downloads/alice-smol/{action}"), 404, "download_not_found")
    # Without a token, the gateway itself refuses.
    assert httpx.get(f"{gateway.url}/downloads").status_code == 401

    # A page at a time, newest first, with the total (the service's X-Total-Count).
    second = alice.post("/downloads", json={**source, "model_id": "alice-smol-2"})
    assert second.status_code == 202, second.text
    assert followed(alice, "alice-smol-2")[-1]["state"] == "ready"
    pages = [alice.get("/downloads", params={"limit": 1, "offset": n}) for n in (0, 1, 2)]
    assert [[j["model_id"] for j in page.json()] for page in pages] == [
        ["alice-smol-2"],
        ["alice-smol"],
        [],
    ]
    assert {page.headers["X-Total-Count"] for page in pages} == {"2"}
    assert bob.get("/downloads").headers["X-Total-Count"] == "0"
    refused(alice.get("/downloads", params={"offset": -1}), 422, "invalid_request")


def test_cancel_and_retry_through_the_gateway(
    gateway: RunningService,
    as_user: AsUser,
    module_contract: RunningService,
    signer: TokenSigner,
    upstream_store: MinioServer,
    smollm2_upstream: str,
) -> None:
    data = os.urandom(BIG)
    upstream_store.put(smollm2_upstream, "big/weights.gguf", data)
    allow_downloads(module_contract, signer, "carol", ["weights.gguf"])
    carol, dave = as_user(gateway, "carol"), as_user(gateway, "dave")
    started = carol.post("/downloads", json={"key": "big/weights.gguf", "model_id": "big"})
    assert started.status_code == 202, started.text

    def midway() -> dict[str, Any] | None:
        job: dict[str, Any] = carol.get("/downloads/big").json()
        assert job["state"] in ("queued", "transferring"), job
        return job if 0 < job["bytes_done"] < BIG else None

    job = wait_for(midway, timeout=60, interval=0.05, what="big to be half copied")
    assert job["bytes_total"] == BIG
    assert job["progress"] is not None and 0 < job["progress"] < 1
    refused(dave.post("/downloads/big/cancel"), 404, "download_not_found")
    cancelled = carol.post("/downloads/big/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["error"]["code"] == "cancelled"
    refused(carol.post("/downloads/big/cancel"), 409, "not_running")

    retried = carol.post("/downloads/big/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["state"] == "queued"
    done = followed(carol, "big")[-1]
    assert (done["state"], done["attempts"], done["bytes_done"]) == ("ready", 2, BIG)
    assert carol.get("/downloads?state=ready").json()[0]["model_id"] == "big"
