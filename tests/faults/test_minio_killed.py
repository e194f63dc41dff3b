"""MinIO killed (SIGKILL) in the middle of a download and in the middle of a batch job,
restarted after a bounded pause on the same data: the download ends with one verified
copy and one record, the batch's output file answers every request exactly once, and
neither service is restarted.

tests/download/test_recovery.py kills the download service mid-transfer and
tests/jobs/test_worker_killed.py a jobs replica; here the store itself goes away under
services that stay up. Each test starts MinIO servers of its own: the session's stores
serve every other module.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.objectstores import MinioServer, start_minio
from modelserve.testbed.platform import start_service
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.processes import ManagedProcess, free_port, port_open

pytestmark = [pytest.mark.postgres, pytest.mark.minio]

# With 5 MiB parts copied one at a time, big enough to be caught in the middle.
SIZE = 120 << 20
PART = 5 << 20
# How long a killed store stays away: longer than the client's own retries of a request.
PAUSE = 15.0
ITEMS = 400


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, MinioServer]]:
    """An upstream and a platform MinIO of this test's own."""
    started: dict[str, MinioServer] = {}
    try:
        for role in ("upstream", "platform"):
            started[role] = start_minio(role, tmp_path / "minio", bucket=f"faults-{role}")
        yield started
    finally:
        for store in started.values():
            store.stop()


def sha256_of(store: MinioServer, key: str) -> str:
    digest = hashlib.sha256()
    response = store.client().get_object(store.bucket, key)
    try:
        for chunk in response.stream(1 << 20):
            digest.update(chunk)
    finally:
        response.close()
        response.release_conn()
    return digest.hexdigest()


@pytest.mark.parametrize("killed", ["platform", "upstream"])
def test_a_download_survives_a_killed_store(
    killed: str,
    stores: dict[str, MinioServer],
    database_url: str,
    testbed_dir: Path,
    jwt_secret: str,
    signer: TokenSigner,
    figure: Callable[[str, float], None],
) -> None:
    upstream, platform = stores["upstream"], stores["platform"]
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).hexdigest()
    upstream.put(upstream.bucket, "big/weights.gguf", data, sha256=digest)
    del data
    key = "models/big/weights.gguf"
    with fresh_schema(database_url, "faults_download") as schema:
        service = start_service(
            "download",
            testbed_dir / "logs",
            {
                "JWT_SECRET": jwt_secret,
                "DOWNLOAD_DATABASE_URL": schema_url(database_url, schema),
                "DOWNLOAD_UPSTREAM_ENDPOINT": upstream.endpoint,
                "DOWNLOAD_UPSTREAM_ACCESS_KEY": upstream.access_key,
                "DOWNLOAD_UPSTREAM_SECRET_KEY": upstream.secret_key,
                "DOWNLOAD_UPSTREAM_BUCKETS": upstream.bucket,
                "DOWNLOAD_PLATFORM_ENDPOINT": platform.endpoint,
                "DOWNLOAD_PLATFORM_ACCESS_KEY": platform.access_key,
                "DOWNLOAD_PLATFORM_SECRET_KEY": platform.secret_key,
                "DOWNLOAD_PLATFORM_BUCKET": platform.bucket,
                "DOWNLOAD_WORKER_ID": f"faults-{uuid.uuid4().hex[:6]}",
                "DOWNLOAD_PART_SIZE": str(PART),
                "DOWNLOAD_PARALLEL_PARTS": "1",
                "DOWNLOAD_PROGRESS_SECONDS": "0.2",
                "DOWNLOAD_POLL_SECONDS": "1",
                # A stalled attempt's lease runs out soon: the next one begins then.
                "DOWNLOAD_LEASE_SECONDS": "3",
            },
        )
        token = signer.sign("root", roles=("admin",))
        try:
            with httpx.Client(
                base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as admin:
                assert admin.post("/download/big").status_code == 202

                def midway() -> dict[str, Any] | None:
                    job: dict[str, Any] = admin.get("/status/big").json()
                    assert job["state"] in ("queued", "transferring"), job
                    return job if 2 * PART <= job["bytes_done"] < SIZE - 4 * PART else None

                wait_for(midway, timeout=120, interval=0.05, what="the copy to be half-way")
                store = stores[killed]
                store.process.kill()
                # What a client sees meanwhile: the service answers (it needs only
                # PostgreSQL), and the job is not failed.
                states = set()
                until = time.monotonic() + PAUSE
                while time.monotonic() < until:
                    answer = admin.get("/status/big")
                    assert answer.status_code == 200, answer.text
                    states.add(answer.json()["state"])
                    time.sleep(0.5)
                print(f"\nstates seen while the {killed} store was down: {sorted(states)}")
                assert states == {"transferring"}
                store.process.start()
                store.process.wait_until(
                    lambda: store.client().bucket_exists(store.bucket), 60, "live again"
                )
                back = time.monotonic()

                def ended() -> dict[str, Any] | None:
                    job: dict[str, Any] = admin.get("/status/big").json()
                    return job if job["state"] in ("ready", "failed", "cancelled") else None

                job = wait_for(ended, timeout=180, interval=0.2, what="the download to end")
                figure(
                    f"download ready after the {killed} store came back", time.monotonic() - back
                )
                assert job["state"] == "ready", job
                assert job["attempts"] >= 2  # the attempt the outage broke was not the last
                record = admin.get("/models/big").json()
                assert (record["sha256"], record["verified"]) == (digest, True)
                # One record, not two.
                assert [model["id"] for model in admin.get("/models").json()] == ["big"]
            assert service.process.running()
        finally:
            service.stop()
    # One object, whole and right; no upload of a broken attempt left open.
    listed = [
        item.object_name for item in platform.client().list_objects(platform.bucket, recursive=True)
    ]
    assert listed == [key]
    assert sha256_of(platform, key) == digest
    assert platform.open_uploads(platform.bucket, key) == []


# --- A batch job --------------------------------------------------------------------------


@pytest.fixture
def stub_gateway(testbed_dir: Path) -> Iterator[str]:
    """The test bed's OpenAI stub as a process, standing in for the gateway the jobs
    service sends its items to (it also answers /auth/delegate)."""
    port = free_port()
    process = ManagedProcess(
        "openai-stub",
        [sys.executable, "-m", "modelserve.testbed.openai_stub", "--port", str(port)],
        testbed_dir / "logs" / f"openai-stub-{port}.log",
    )
    process.start()
    try:
        process.wait_until(lambda: port_open(port), 30, "listening")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def job_counts(database: str, job_id: str) -> tuple[str, int, int, int]:
    """(status, done, failed, items with an output) of the job, from its own tables."""
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT status, done, failed FROM jobs WHERE id = %s", [job_id]
        ).fetchone()
        (answered,) = conn.execute(
            "SELECT count(*) FROM job_items WHERE job_id = %s AND output IS NOT NULL", [job_id]
        ).fetchone() or (0,)
    assert row is not None
    return str(row[0]), int(row[1]), int(row[2]), int(answered)


def test_a_batch_survives_a_killed_store(
    stores: dict[str, MinioServer],
    stub_gateway: str,
    database_url: str,
    testbed_dir: Path,
    jwt_secret: str,
    signer: TokenSigner,
    figure: Callable[[str, float], None],
) -> None:
    store = stores["platform"]
    with fresh_schema(database_url, "faults_jobs") as schema:
        database = schema_url(database_url, schema)
        jobs = start_service(
            "jobs",
            testbed_dir / "logs",
            {
                "JWT_SECRET": jwt_secret,
                "JOBS_DATABASE_URL": database,
                "JOBS_GATEWAY_URL": stub_gateway,
                "JOBS_STORE_ENDPOINT": store.endpoint,
                "JOBS_STORE_ACCESS_KEY": store.access_key,
                "JOBS_STORE_SECRET_KEY": store.secret_key,
                "JOBS_STORE_BUCKET": store.bucket,
                "JOBS_WORKER_ID": "faults",
                "JOBS_CONCURRENCY": "2",
                "JOBS_POLL_SECONDS": "0.2",
                "JOBS_RENEW_SECONDS": "0.5",
                "JOBS_RETRY_SECONDS": "0.5",
            },
        )
        try:
            client = openai.OpenAI(
                base_url=jobs.url + "/v1", api_key=signer.sign("ivan"), max_retries=0
            )
            lines = [
                {
                    "custom_id": f"n{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "stub", "messages": [{"role": "user", "content": str(i)}]},
                }
                for i in range(ITEMS)
            ]
            content = "".join(json.dumps(line) + "\n" for line in lines).encode()
            uploaded = client.files.create(file=("input.jsonl", content), purpose="batch")
            batch = client.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            wait_for(
                lambda: job_counts(database, batch.id)[1] >= 5,
                timeout=60,
                interval=0.05,
                what="the first items to be answered",
            )
            store.process.kill()
            status, done_at_kill, _, _ = job_counts(database, batch.id)
            assert status == "running" and done_at_kill < ITEMS  # killed in the middle
            # Items still run (they live in PostgreSQL); the files do not.
            down = httpx.get(
                f"{jobs.url}/v1/files/{uploaded.id}/content",
                headers={"Authorization": f"Bearer {signer.sign('ivan')}"},
                timeout=30,
            )
            print(f"\nfile content while the store is down: {down.status_code} {down.text}")
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "store_unreachable"
            # The store's address inside the platform is no business of the caller's.
            assert str(store.port) not in down.text and "127.0.0.1" not in down.text
            assert down.headers.get("retry-after")
            time.sleep(PAUSE)
            done_in_outage = job_counts(database, batch.id)[1]
            # Not completed while its output file cannot be written.
            waiting = client.batches.retrieve(batch.id)
            print(f"the batch while the store is down: {waiting.status}")
            assert waiting.status != "completed" and waiting.output_file_id is None
            store.process.start()
            store.process.wait_until(
                lambda: store.client().bucket_exists(store.bucket), 60, "live again"
            )
            back = time.monotonic()

            def ended() -> openai.types.Batch | None:
                current = client.batches.retrieve(batch.id)
                ending = ("completed", "failed", "expired", "cancelled")
                return current if current.status in ending else None

            finished = wait_for(ended, timeout=180, interval=0.2, what="the batch to end")
            figure("batch output written after the store came back", time.monotonic() - back)
            print(
                f"batch: {done_at_kill} of {ITEMS} items answered when the store was killed, "
                f"{done_in_outage} when it came back"
            )
            assert finished.status == "completed", finished
            assert finished.request_counts is not None
            assert finished.request_counts.model_dump() == {
                "total": ITEMS,
                "completed": ITEMS,
                "failed": 0,
            }
            assert finished.output_file_id is not None and finished.error_file_id is None
            output = [
                json.loads(line)
                for line in client.files.content(finished.output_file_id).text.splitlines()
            ]
            # Every request answered exactly once in the output file.
            assert sorted(line["custom_id"] for line in output) == sorted(
                f"n{i}" for i in range(ITEMS)
            )
            assert job_counts(database, batch.id) == ("done", ITEMS, 0, ITEMS)
            assert jobs.process.running()
        finally:
            jobs.stop()
