"""A jobs service killed mid-job on real SmolLM2 (llama-cpp-python's server): another
replica takes its items again when their leases run out, and every item of the job is
done exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import psycopg
import pytest

from modelserve.jobs.store import JobStore
from modelserve.testbed.llm import LlmServer
from modelserve.testbed.platform import RunningService

pytestmark = [pytest.mark.postgres, pytest.mark.llm]
StoreOpener = Callable[[str], contextlib.AbstractAsyncContextManager[JobStore]]
ITEMS = 24


def counts(url: str, job_id: str) -> tuple[str, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status, done, failed FROM jobs WHERE id = %s", [job_id]
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), int(row[2])


def wait_until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {within:.0f} s")
        time.sleep(0.1)


def test_a_killed_replica_loses_nothing_and_duplicates_nothing(
    llm: LlmServer,
    start_jobs: Callable[..., RunningService],
    jobs_database: str,
    open_store: StoreOpener,
) -> None:
    async def create() -> str:
        async with open_store(jobs_database) as store:
            job = await store.create(
                type="chat",
                owner="alice",
                team=None,
                model=llm.alias,
                spec={},
                inputs=[
                    {
                        "model": llm.alias,
                        "messages": [{"role": "user", "content": f"Say the number {i}."}],
                        "max_tokens": 8,
                        "temperature": 0,
                    }
                    for i in range(ITEMS)
                ],
            )
            return job.id

    job_id = asyncio.run(create())
    settings = {
        "JOBS_GATEWAY_URL": f"http://127.0.0.1:{llm.port}",
        "JOBS_LEASE_SECONDS": "2",
        "JOBS_CONCURRENCY": "2",
    }
    first = start_jobs(JOBS_WORKER_ID="first", **settings)
    wait_until(lambda: counts(jobs_database, job_id)[1] >= 3, 120, "3 items done")
    first.process.kill()
    status, done_at_kill, _ = counts(jobs_database, job_id)
    assert status == "running" and done_at_kill < ITEMS
    with psycopg.connect(jobs_database) as conn:
        held = conn.execute(
            """SELECT index FROM job_items
               WHERE job_id = %s AND state = 'running' AND lease_owner = 'first'""",
            [job_id],
        ).fetchall()
    in_flight = {row[0] for row in held}
    assert in_flight, "the first replica was killed with items in flight"

    start_jobs(JOBS_WORKER_ID="second", **settings)
    wait_until(lambda: counts(jobs_database, job_id)[0] != "running", 300, "finished")
    assert counts(jobs_database, job_id) == ("done", ITEMS, 0)
    with psycopg.connect(jobs_database) as conn:
        rows = conn.execute(
            """SELECT index, state, lease_owner, output->>'object', attempts FROM job_items
               WHERE job_id = %s ORDER BY index""",
            [job_id],
        ).fetchall()
    assert [row[0] for row in rows] == list(range(ITEMS))
    assert {row[1] for row in rows} == {"done"}
    assert {row[3] for row in rows} == {"chat.completion"}
    assert {row[2] for row in rows} == {"first", "second"}
    # Those it held were taken again by the second, once each.
    assert {(row[2], row[4]) for row in rows if row[0] in in_flight} == {("second", 2)}
