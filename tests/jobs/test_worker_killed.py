"""A jobs replica SIGKILLed mid-batch: another replica takes its requests again when their
leases run out, and the batch's output file has every request exactly once.

Two replicas of their own (a database of their own, the platform's store) send their
requests through the real gateway of `job_platform` as the batch's owner, a real account;
the batch is made with the `openai` client against the first replica directly."""

from __future__ import annotations

import json
from collections.abc import Callable

import openai
import psycopg
import pytest

from modelserve.testbed.job_platform import JobPlatform
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]
ITEMS = 20


def counts(url: str, job_id: str) -> tuple[str, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status, done, failed FROM jobs WHERE id = %s", [job_id]
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), int(row[2])


def test_a_killed_replica_loses_nothing_and_duplicates_nothing(
    job_platform: JobPlatform,
    start_jobs: Callable[..., RunningService],
    jobs_database: str,
) -> None:
    job_platform.user("ivan").close()
    store = job_platform.store
    settings = {
        "JOBS_GATEWAY_URL": job_platform.gateway.url,
        "JWT_GATEWAY_URL": job_platform.gateway.url,
        "JOBS_STORE_ENDPOINT": store.endpoint,
        "JOBS_STORE_ACCESS_KEY": store.access_key,
        "JOBS_STORE_SECRET_KEY": store.secret_key,
        "JOBS_STORE_BUCKET": job_platform.bucket,
        "JOBS_LEASE_SECONDS": "2",
        "JOBS_CONCURRENCY": "2",
    }

    def client(replica: RunningService) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=replica.url + "/v1", api_key=job_platform.token("ivan"), max_retries=0
        )

    first = start_jobs(JOBS_WORKER_ID="first", **settings)
    lines = [
        {
            "custom_id": f"n{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": job_platform.model,
                "messages": [{"role": "user", "content": f"Say the number {i}."}],
                "max_tokens": 4,
                "temperature": 0,
            },
        }
        for i in range(ITEMS)
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client(first).files.create(file=("input.jsonl", content), purpose="batch")
    batch = client(first).batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    wait_for(lambda: counts(jobs_database, batch.id)[1] >= 3, timeout=120, what="3 items done")
    first.process.kill()
    status, done_at_kill, _ = counts(jobs_database, batch.id)
    assert status == "running" and done_at_kill < ITEMS
    with psycopg.connect(jobs_database) as conn:
        held = conn.execute(
            """SELECT index FROM job_items
               WHERE job_id = %s AND state = 'running' AND lease_owner = 'first'""",
            [batch.id],
        ).fetchall()
    in_flight = {row[0] for row in held}
    assert in_flight, "the first replica was killed with items in flight"

    second = start_jobs(JOBS_WORKER_ID="second", **settings)

    def ended() -> openai.types.Batch | None:
        current = client(second).batches.retrieve(batch.id)
        return current if current.status == "completed" else None

    finished = wait_for(ended, timeout=240, what="the batch to complete", interval=0.5)
    assert finished.request_counts is not None
    assert finished.request_counts.model_dump() == {"total": ITEMS, "completed": ITEMS, "failed": 0}
    assert finished.output_file_id is not None and finished.error_file_id is None
    output = [
        json.loads(line)
        for line in client(second).files.content(finished.output_file_id).text.splitlines()
    ]
    assert sorted(line["custom_id"] for line in output) == sorted(f"n{i}" for i in range(ITEMS))
    assert {line["response"]["body"]["object"] for line in output} == {"chat.completion"}
    with psycopg.connect(jobs_database) as conn:
        rows = conn.execute(
            "SELECT index, lease_owner, attempts FROM job_items WHERE job_id = %s ORDER BY index",
            [batch.id],
        ).fetchall()
    assert {row[1] for row in rows} == {"first", "second"}
    # Those it held were taken again by the second, once each.
    assert {(row[1], row[2]) for row in rows if row[0] in in_flight} == {("second", 2)}
