"""Downloads survive a killed service, a dead replica and a cancel, ending with one
verified copy or none."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.minio]

# Big enough, with one 5 MiB part at a time, to be stopped in the middle.
SIZE = 160 << 20
SLOW = {"DOWNLOAD_PARALLEL_PARTS": "1"}


def admin_client(service: RunningService, signer: TokenSigner) -> httpx.Client:
    token = signer.sign("root", roles=("admin",))
    return httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def stored_sha256(store: MinioServer, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    response = store.client().get_object(bucket, key)
    try:
        for chunk in response.stream(1 << 20):
            digest.update(chunk)
    finally:
        response.close()
        response.release_conn()
    return digest.hexdigest()


def wait_transferring(client: httpx.Client, model_id: str) -> dict[str, Any]:
    def midway() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/status/{model_id}").json()
        assert job["state"] in ("queued", "transferring"), job
        return job if 0 < job["bytes_done"] < SIZE else None

    return wait_for(midway, timeout=60, interval=0.05, what=f"{model_id} to be half copied")


@pytest.fixture
def big_model(upstream_store: MinioServer, upstream_bucket: str) -> tuple[str, str]:
    """(model id, SHA-256) of a model upstream, vouched for by its metadata."""
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).hexdigest()
    upstream_store.put(upstream_bucket, "big-model/weights.gguf", data, sha256=digest)
    return "big-model", digest


@pytest.mark.parametrize("same_worker", [True, False], ids=["restarted", "other-replica"])
def test_killed_mid_transfer_ends_with_one_verified_copy(
    same_worker: bool,
    tmp_path: Path,
    start_download: Callable[..., RunningService],
    signer: TokenSigner,
    big_model: tuple[str, str],
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    model_id, digest = big_model
    key = f"models/{model_id}/weights.gguf"
    work = {"DOWNLOAD_WORK_DIR": str(tmp_path)}
    first = start_download(**SLOW, **work, DOWNLOAD_LEASE_SECONDS="3")
    with admin_client(first, signer) as client:
        assert client.post(f"/download/{model_id}").status_code == 202
        wait_transferring(client, model_id)
        assert platform_store.open_uploads(platform_bucket, key) != []
    first.process.kill()
    assert [p.name for p in tmp_path.glob(f"download-{model_id}-*")] != []  # left behind

    # The same service started again takes its job back at once; another replica
    # (another worker id) takes it once the dead one's lease has run out.
    second = start_download(**work, **({} if same_worker else {"DOWNLOAD_WORKER_ID": "replica-2"}))
    with admin_client(second, signer) as client:
        job = wait_finished(client, model_id)
        assert job["state"] == "ready", job
        assert job["attempts"] == 2
        record = client.get(f"/models/{model_id}").json()
    assert record["sha256"] == digest
    assert record["verified"] is True
    assert [
        item.object_name
        for item in platform_store.client().list_objects(platform_bucket, recursive=True)
    ] == [key]
    assert stored_sha256(platform_store, platform_bucket, key) == digest
    # The killed attempt's multipart upload was aborted, not left to expire, and what it
    # kept on disk was removed when the service started (the second attempt's, when it
    # ended).
    assert platform_store.open_uploads(platform_bucket, key) == []
    assert list(tmp_path.glob("download-*")) == []


def test_cancel_leaves_nothing_and_retry_copies_again(
    start_download: Callable[..., RunningService],
    signer: TokenSigner,
    big_model: tuple[str, str],
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    model_id, digest = big_model
    key = f"models/{model_id}/weights.gguf"
    service = start_download(**SLOW)
    with admin_client(service, signer) as client:
        client.post(f"/download/{model_id}")
        wait_transferring(client, model_id)
        cancelled = client.post(f"/download/{model_id}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["state"] == "cancelled"
        assert cancelled.json()["error"]["code"] == "cancelled"
        # The worker notices at its next report and aborts the upload.
        wait_for(
            lambda: platform_store.open_uploads(platform_bucket, key) == [],
            timeout=30,
            what="the cancelled upload to be aborted",
        )
        assert platform_store.contents(platform_bucket) == {}
        assert client.get(f"/status/{model_id}").json()["state"] == "cancelled"
        assert client.post(f"/download/{model_id}/cancel").status_code == 409

        retried = client.post(f"/download/{model_id}/retry")
        assert retried.status_code == 202
        assert retried.json()["state"] == "queued"
        job = wait_finished(client, model_id)
        assert job["state"] == "ready"
        assert client.post(f"/download/{model_id}/retry").status_code == 409
    assert stored_sha256(platform_store, platform_bucket, key) == digest
