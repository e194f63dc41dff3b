"""What the download service answers to bad input, to whom, and its command line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService

pytestmark = [pytest.mark.postgres, pytest.mark.minio]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"key": "../etc/passwd"}, "invalid_key"),
        ({"key": "models/../../secret.gguf"}, "invalid_key"),
        ({"key": "/abs/model.gguf"}, "invalid_key"),
        ({"key": "model\x00.gguf"}, "invalid_key"),
        ({"prefix": "folder/\nnext"}, "invalid_key"),
        ({"key": "dir\\model.gguf"}, "invalid_key"),
        ({"key": "a.gguf", "prefix": "b/"}, "invalid_source"),
        ({}, "invalid_source"),
        ({"key": "a.gguf", "bucket": "Not_A_Bucket"}, "invalid_bucket"),
        ({"key": "a.gguf", "bucket": "other-bucket"}, "bucket_not_allowed"),
        ({"key": "a.gguf", "sha256": "abc"}, "invalid_checksum"),
        ({"key": "a.gguf", "model_id": "../x"}, "invalid_model_id"),
    ],
)
def test_bad_sources_are_refused_and_recorded_as_failed_jobs(
    admin: httpx.Client, body: dict[str, str], code: str
) -> None:
    response = admin.post("/downloads", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    # Nothing is copied, and the refusal stays on record with its reason.
    (job,) = admin.get("/downloads").json()
    assert job["state"] == "failed"
    assert job["error"]["code"] == code
    assert job["error"]["message"] in response.json()["error"]["message"]
    assert job["model_id"] in response.json()["error"]["message"]
    assert admin.get(f"/status/{job['model_id']}").json()["state"] == "failed"


def test_bad_model_id_in_the_seeds_call(admin: httpx.Client) -> None:
    response = admin.post("/download/..%2Fsecret")
    assert response.status_code in (404, 422)
    response = admin.post("/download/-starts-with-dash")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_model_id"


def test_what_the_upstream_lacks_fails_the_job_with_its_reason(
    start_download: Callable[..., RunningService],
    signer: TokenSigner,
    upstream_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    service = start_download(DOWNLOAD_UPSTREAM_BUCKETS=f"{upstream_bucket},no-such-bucket")
    token = signer.sign("root", roles=("admin",))
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {token}"}) as admin:
        cases = {
            "missing-object": ({"key": "nothing/here.gguf"}, "object_not_found"),
            "missing-folder": ({"prefix": "nothing/here"}, "object_not_found"),
            "unknown-bucket": ({"bucket": "no-such-bucket", "key": "a.gguf"}, "unknown_bucket"),
            "unknown-bucket-folder": (
                {"bucket": "no-such-bucket", "prefix": "a"},
                "unknown_bucket",
            ),
        }
        for model_id, (body, _) in cases.items():
            response = admin.post("/downloads", json={"model_id": model_id, **body})
            assert response.status_code == 202, response.text
        for model_id, (_, code) in cases.items():
            job = wait_finished(admin, model_id)
            assert job["state"] == "failed", job
            assert job["error"]["code"] == code, job
            assert job["error"]["message"]
        failed = admin.get("/downloads", params={"state": "failed"}).json()
        assert sorted(job["model_id"] for job in failed) == sorted(cases)
        # The service is still there and well.
        assert admin.get("/health").status_code == 200


def test_wrong_upstream_credentials_fail_the_job(
    start_download: Callable[..., RunningService],
    signer: TokenSigner,
    upstream_store: MinioServer,
    upstream_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    upstream_store.put(upstream_bucket, "m/model.gguf", b"GGUF" + bytes(100))
    service = start_download(DOWNLOAD_UPSTREAM_SECRET_KEY="not-the-secret-key")
    token = signer.sign("root", roles=("admin",))
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {token}"}) as admin:
        admin.post("/download/m")
        job = wait_finished(admin, "m")
    assert job["state"] == "failed"
    assert job["error"]["code"] == "store_credentials"
    assert "SignatureDoesNotMatch" in job["error"]["message"]


def test_unreadable_gguf_header_still_makes_a_model(
    admin: httpx.Client,
    upstream_store: MinioServer,
    upstream_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    upstream_store.put(upstream_bucket, "m/model.gguf", b"not a gguf file at all")
    admin.post("/download/m")
    assert wait_finished(admin, "m")["state"] == "ready"
    record = admin.get("/models/m").json()
    assert record["format"] == "gguf"
    assert record["architecture"] is None


def test_tokens_and_ownership(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    download: RunningService,
    upstream_store: MinioServer,
    upstream_bucket: str,
) -> None:
    assert httpx.get(f"{download.url}/models").status_code == 401
    forged = httpx.get(f"{download.url}/models", headers={"Authorization": "Bearer x"})
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "token_invalid"
    alice = client("alice")
    # Without a contract service to ask, only admins and services start downloads.
    refused = alice.post("/download/m")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "downloads_not_allowed"
    assert alice.get("/models").json() == []

    upstream_store.put(upstream_bucket, "m/model.gguf", b"x" * 10)
    assert admin.post("/download/m").status_code == 202
    assert alice.get("/status/m").status_code == 404  # users see their own
    assert alice.get("/downloads").json() == []
    assert len(admin.get("/downloads").json()) == 1
    assert alice.post("/download/m/cancel").json()["error"]["code"] == "download_not_found"
    assert alice.get("/status/nope").status_code == 404
    assert alice.get("/models/nope").json()["error"]["code"] == "model_not_found"


def test_users_whose_contract_allows_it_may_download(
    contract_service: RunningService,
    start_download: Callable[..., RunningService],
    signer: TokenSigner,
    upstream_store: MinioServer,
    upstream_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    upstream_store.put(upstream_bucket, "m/model.gguf", b"x" * 10)
    service = start_download(DOWNLOAD_CONTRACT_URL=contract_service.url)

    def as_user(subject: str, roles: tuple[str, ...] = ()) -> httpx.Client:
        token = signer.sign(subject, roles=roles)
        return httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {token}"})

    root = signer.sign("root", roles=("admin",))
    allowed = httpx.put(
        f"{contract_service.url}/contracts/user/alice",
        json={"downloads": True, "models": ["m", "other-*"]},
        headers={"Authorization": f"Bearer {root}"},
    )
    assert allowed.status_code == 200, allowed.text
    with as_user("alice") as alice, as_user("bob") as bob:
        refused = bob.post("/download/m")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "downloads_not_allowed"
        assert "bob" in refused.json()["error"]["message"]
        outside = alice.post("/download/secret-model")
        assert outside.json()["error"]["code"] == "model_not_allowed"

        accepted = alice.post("/download/m")
        assert accepted.status_code == 202
        assert accepted.json()["requested_by"] == "alice"
        assert wait_finished(alice, "m")["state"] == "ready"
        assert [job["model_id"] for job in alice.get("/downloads").json()] == ["m"]


def test_cli_starts_a_download_and_follows_it(
    download: RunningService,
    signer: TokenSigner,
    upstream_store: MinioServer,
    upstream_bucket: str,
    tmp_path: Path,
) -> None:
    upstream_store.put(upstream_bucket, "cli-model/model.gguf", bytes(12 << 20))
    script = Path(sys.executable).parent / "modelserve-download"
    env = {"MODELSERVE_TOKEN": signer.sign("root", roles=("admin",)), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [script, "--url", download.url, "get", "cli-model"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["id"] == "cli-model"
    assert record["size"] == 12 << 20
    # The progress bar, on stderr: the size and the last state.
    assert "12.0M" in done.stderr
    assert "ready" in done.stderr

    listing = subprocess.run(
        [script, "--url", download.url, "list"], env=env, capture_output=True, text=True
    )
    assert listing.stdout.startswith("cli-model\tready\t")

    missing = subprocess.run(
        [script, "--url", download.url, "copy", "--key", "no/such.gguf"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1
    assert "failed" in missing.stderr

    unauthenticated = subprocess.run(
        [script, "--url", download.url, "status", "cli-model"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert unauthenticated.returncode == 2
    assert "no token" in unauthenticated.stderr
