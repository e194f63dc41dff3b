"""The per-model cap across replicas and the poison item, on the test bed's real
PostgreSQL: workers claiming at once never hold more than a model's cap between them,
and an item whose worker dies every time it runs it is failed as `worker_lost`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from modelserve.common.database import open_pool
from modelserve.common.tokens import TokenSettings
from modelserve.jobs.app import build_executors
from modelserve.jobs.settings import JobsSettings
from modelserve.jobs.store import Item, JobStore
from modelserve.jobs.worker import Worker
from modelserve.testbed import openai_stub

pytestmark = pytest.mark.postgres
StoreOpener = Callable[[str], contextlib.AbstractAsyncContextManager[JobStore]]


def chat(n: int, model: str = "stub") -> list[dict[str, Any]]:
    return [
        {"model": model, "messages": [{"role": "user", "content": f"item {i}"}]} for i in range(n)
    ]


def worker_settings(url: str, tokens: TokenSettings, port: int, **overrides: Any) -> JobsSettings:
    values: dict[str, Any] = {
        "database_url": SecretStr(url),
        "gateway_url": f"http://127.0.0.1:{port}",
        "tokens": tokens,
        "worker_id": "live",
        "poll_seconds": 0.05,
        "renew_seconds": 0.2,
        "lease_seconds": 2.0,
        "retry_seconds": 0.05,
        **overrides,
    }
    return JobsSettings(**values)


async def run_until_finished(
    store: JobStore, http: httpx.AsyncClient, config: JobsSettings, job_id: str
) -> str:
    """A worker runs until the job has finished (30 s at most): the job's status."""
    task = asyncio.create_task(Worker(config, store, build_executors(config, http)).run())
    try:
        async with asyncio.timeout(30):
            while True:
                job = await store.get(job_id, visible_to=None)
                assert job is not None
                if job.status in ("done", "failed", "cancelled"):
                    return job.status
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def live_leases(url: str, model: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT count(*) FROM job_items i JOIN jobs j ON j.id = i.job_id
               WHERE j.model = %s AND i.state = 'running' AND i.lease_until > now()""",
            [model],
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_concurrent_claims_never_exceed_a_model_s_cap_across_workers(
    jobs_database: str, open_store: StoreOpener
) -> None:
    """Twelve workers, each with its own connections (as replicas have), claim at once
    from two jobs of one model and one of another: the capped model has exactly its cap
    of live leases between them, the other model is capped on its own."""

    async def scenario() -> list[Item]:
        async with open_store(jobs_database) as store:
            for _ in range(2):
                await store.create(
                    type="chat", owner="a", team=None, model="m", spec={}, inputs=chat(30, "m")
                )
            await store.create(
                type="chat", owner="a", team=None, model="n", spec={}, inputs=chat(30, "n")
            )
            pools = [await open_pool(jobs_database, size=1, wait=5.0) for _ in range(12)]
            try:
                replicas = [JobStore(pool) for pool in pools]
                start = asyncio.Event()

                async def replica(store: JobStore, name: str) -> list[Item]:
                    await start.wait()
                    held = []
                    for _ in range(10):
                        item = await store.claim(
                            name,
                            lease=60,
                            types=["chat"],
                            full_models=[],
                            caps={"m": 5},
                            default_cap=3,
                        )
                        if item is not None:
                            held.append(item)
                    return held

                tasks = [
                    asyncio.create_task(replica(store, f"w{i}")) for i, store in enumerate(replicas)
                ]
                start.set()
                return [item for held in await asyncio.gather(*tasks) for item in held]
            finally:
                for pool in pools:
                    await pool.close()

    claimed = asyncio.run(scenario())
    by_model = {m: [item for item in claimed if item.model == m] for m in ("m", "n")}
    assert (len(by_model["m"]), len(by_model["n"])) == (5, 3)
    assert (live_leases(jobs_database, "m"), live_leases(jobs_database, "n")) == (5, 3)
    assert len({item.owner for item in claimed}) > 1  # the replicas really competed


def test_finished_items_free_their_model_s_slots(
    jobs_database: str, open_store: StoreOpener
) -> None:
    async def scenario() -> None:
        async with open_store(jobs_database) as store:
            job = await store.create(
                type="chat", owner="a", team=None, model="m", spec={}, inputs=chat(4, "m")
            )

            async def claim(worker: str) -> Item | None:
                return await store.claim(
                    worker, lease=60, types=["chat"], full_models=[], caps={"m": 2}
                )

            first, second = await claim("w1"), await claim("w2")
            assert first is not None and second is not None
            assert await claim("w3") is None
            assert await store.complete(first, {"ok": True})
            third = await claim("w3")
            assert third is not None and third.index == 2
            assert await claim("w1") is None
            # A cancelled job's running items keep their slots until their leases end.
            await store.cancel(job.id, visible_to=None)
            other = await store.create(
                type="chat", owner="a", team=None, model="m", spec={}, inputs=chat(1, "m")
            )
            assert await claim("w1") is None
            assert await store.renew("w2", [second], lease=60) == set()
            pending = await store.get(other.id, visible_to=None)
            assert pending is not None and pending.status == "pending"

    asyncio.run(scenario())


def test_an_item_whose_worker_dies_each_time_is_failed_as_worker_lost(
    jobs_database: str, jobs_tokens: TokenSettings, open_store: StoreOpener
) -> None:
    """Item 0 is taken by workers that die (their leases run out) three times; the next
    claim fails it as `worker_lost` instead of running it a fourth time, and a live
    worker finishes the rest of the job."""

    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        async with (
            openai_stub.serving() as port,
            open_store(jobs_database) as store,
            httpx.AsyncClient() as http,
        ):
            job = await store.create(
                type="chat", owner="a", team=None, model="stub", spec={}, inputs=chat(3)
            )
            for attempt in range(1, 4):
                item = await store.claim(
                    f"dies-{attempt}",
                    lease=0.2,
                    types=["chat"],
                    full_models=[],
                    max_attempts=3,
                )
                assert item is not None and (item.index, item.attempts) == (0, attempt)
                await asyncio.sleep(0.3)  # it died: its lease runs out
            config = worker_settings(jobs_database, jobs_tokens, port, max_attempts=3)
            status = await run_until_finished(store, http, config, job.id)
            outcomes = await store.outcomes(job.id)
            return status, [o.model_dump() for o in outcomes]

    status, outcomes = asyncio.run(scenario())
    assert status == "done"
    assert [(o["index"], o["state"]) for o in outcomes] == [
        (0, "failed"),
        (1, "done"),
        (2, "done"),
    ]
    assert outcomes[0]["error"] == {
        "code": "worker_lost",
        "message": "its worker was lost each of the 3 times it ran",
    }
    with psycopg.connect(jobs_database) as conn:
        row = conn.execute("SELECT done, failed FROM jobs").fetchone()
    assert row == (2, 1)


def test_a_poison_item_under_the_limit_is_taken_again(
    jobs_database: str, open_store: StoreOpener
) -> None:
    async def scenario() -> None:
        async with open_store(jobs_database) as store:
            await store.create(type="chat", owner="a", team=None, model="m", spec={}, inputs=[{}])
            first = await store.claim("w", lease=0.1, types=["chat"], full_models=[])
            assert first is not None
            await asyncio.sleep(0.2)
            again = await store.claim("w", lease=30, types=["chat"], full_models=[], max_attempts=3)
            assert again is not None and again.attempts == 2

    asyncio.run(scenario())
