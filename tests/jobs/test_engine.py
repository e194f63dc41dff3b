"""The engine on the test bed's real PostgreSQL: items shared by workers, taken again
after their worker's lease ran out, recorded once, cancellation; items run by the `chat`
executor against the in-loop OpenAI stub (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from modelserve.common.objects import ObjectStore, StoreConfig
from modelserve.common.tokens import TokenSettings
from modelserve.jobs.app import build_executors
from modelserve.jobs.outputs import OutputWriter
from modelserve.jobs.settings import JobsSettings
from modelserve.jobs.store import JobStore
from modelserve.jobs.worker import Worker
from modelserve.testbed import openai_stub
from modelserve.testbed.objectstores import MinioServer

pytestmark = pytest.mark.postgres
StoreOpener = Callable[[str], contextlib.AbstractAsyncContextManager[JobStore]]


def chat(n: int, model: str = "stub") -> list[dict[str, Any]]:
    return [
        {"model": model, "messages": [{"role": "user", "content": f"item {i}"}]} for i in range(n)
    ]


def settings(
    url: str, tokens: TokenSettings, worker: str, port: int, **overrides: Any
) -> JobsSettings:
    values: dict[str, Any] = {
        "database_url": SecretStr(url),
        "gateway_url": f"http://127.0.0.1:{port}",
        "tokens": tokens,
        "worker_id": worker,
        "poll_seconds": 0.05,
        "renew_seconds": 0.2,
        "lease_seconds": 2.0,
        "retry_seconds": 0.05,
        **overrides,
    }
    return JobsSettings(**values)


@contextlib.asynccontextmanager
async def running_worker(
    store: JobStore, http: httpx.AsyncClient, config: JobsSettings
) -> AsyncIterator[None]:
    store_config = config.store()
    objects = ObjectStore("platform", store_config, 2) if store_config else None
    outputs = OutputWriter(store.pool, objects, config.store_bucket) if objects else None
    worker = Worker(config, store, build_executors(config, http), outputs)
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if objects is not None:
            objects.close()


async def until_finished(store: JobStore, job_id: str, within: float = 30.0) -> str:
    async with asyncio.timeout(within):
        while True:
            job = await store.get(job_id, visible_to=None)
            assert job is not None
            if job.status in ("done", "failed", "cancelled"):
                return job.status
            await asyncio.sleep(0.05)


async def until_written(store: JobStore, job_id: str) -> dict[str, Any]:
    """The job's result, once its output file is written."""
    async with asyncio.timeout(30):
        while True:
            job = await store.get(job_id, visible_to=None)
            assert job is not None
            if job.result is not None:
                return job.result
            await asyncio.sleep(0.05)


def items(url: str, job_id: str) -> list[tuple[int, str, int, str | None, bool]]:
    """(index, state, attempts, lease_owner, has output) of every item."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT index, state, attempts, lease_owner, output IS NOT NULL
               FROM job_items WHERE job_id = %s ORDER BY index""",
            [job_id],
        ).fetchall()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def test_two_workers_share_a_job_and_record_every_item_once(
    jobs_database: str, jobs_tokens: TokenSettings, open_store: StoreOpener
) -> None:
    async def scenario() -> None:
        async with (
            openai_stub.serving() as port,
            open_store(jobs_database) as store,
            httpx.AsyncClient() as http,
        ):
            job = await store.create(
                type="chat", owner="alice", team=None, model="stub", spec={}, inputs=chat(60)
            )
            async with (
                running_worker(
                    store, http, settings(jobs_database, jobs_tokens, "w1", port, concurrency=2)
                ),
                running_worker(
                    store, http, settings(jobs_database, jobs_tokens, "w2", port, concurrency=2)
                ),
            ):
                assert await until_finished(store, job.id) == "done"
            finished = await store.get(job.id, visible_to=None)
            assert finished is not None
            assert (finished.done, finished.failed, finished.total) == (60, 0, 60)
            outcomes = await store.outcomes(job.id)
            assert [o.index for o in outcomes] == list(range(60))
            assert all(o.output["object"] == "chat.completion" for o in outcomes)

    asyncio.run(scenario())
    rows = items(jobs_database, _only_job(jobs_database))
    assert all(
        state == "done" and attempts == 1 and output for _, state, attempts, _, output in rows
    )
    assert {owner for *_, owner, _ in rows} == {"w1", "w2"}


def _only_job(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM jobs").fetchone()
    assert row is not None
    return str(row[0])


def test_a_dead_worker_s_items_are_taken_again_and_recorded_once(
    jobs_database: str, jobs_tokens: TokenSettings, open_store: StoreOpener
) -> None:
    async def scenario() -> None:
        async with (
            openai_stub.serving() as port,
            open_store(jobs_database) as store,
            httpx.AsyncClient() as http,
        ):
            job = await store.create(
                type="chat", owner="alice", team=None, model="stub", spec={}, inputs=chat(20)
            )
            # A worker takes three items under a short lease, then dies without a word.
            dead = [
                await store.claim("dead", lease=0.5, types=["chat"], full_models=[])
                for _ in range(3)
            ]
            assert all(item is not None for item in dead)
            async with running_worker(
                store, http, settings(jobs_database, jobs_tokens, "live", port)
            ):
                assert await until_finished(store, job.id) == "done"
            # Its late answers change nothing: the items are the live worker's now.
            for item in dead:
                assert item is not None
                assert not await store.complete(item, {"late": True})
                assert not await store.fail(item, {"code": "late", "message": "late"})
            finished = await store.get(job.id, visible_to=None)
            assert finished is not None
            assert (finished.done, finished.failed) == (20, 0)
            rows = items(jobs_database, job.id)
            assert [index for index, *_ in rows] == list(range(20))
            assert {owner for *_, owner, _ in rows} == {"live"}
            retaken = {item.index for item in dead if item is not None}
            assert {index for index, _, attempts, *_ in rows if attempts == 2} == retaken
            outcomes = await store.outcomes(job.id)
            assert not any(o.output.get("late") for o in outcomes)

    asyncio.run(scenario())


def test_cancel_leaves_pending_items_untaken_and_stops_running_ones(
    jobs_database: str, jobs_tokens: TokenSettings, open_store: StoreOpener
) -> None:
    async def scenario() -> None:
        async with open_store(jobs_database) as store:
            job = await store.create(
                type="chat", owner="alice", team=None, model="m", spec={}, inputs=chat(5, "m")
            )
            held = await store.claim("w", lease=30, types=["chat"], full_models=[])
            assert held is not None
            cancelled = await store.cancel(job.id, visible_to="alice")
            assert cancelled is not None and cancelled.status == "cancelled"
            assert await store.claim("w", lease=30, types=["chat"], full_models=[]) is None
            # The running item's worker learns it at its next renewal.
            assert await store.renew("w", [held], lease=30) == set()
            # Cancelling again, or another user's attempt, changes nothing.
            again = await store.cancel(job.id, visible_to="alice")
            assert again is not None and again.finished_at == cancelled.finished_at
            assert await store.cancel(job.id, visible_to="bob") is None
            after = await store.get(job.id, visible_to=None)
            assert after is not None and (after.status, after.done) == ("cancelled", 0)

    asyncio.run(scenario())


def test_an_item_to_retry_waits_its_delay(
    jobs_database: str, jobs_tokens: TokenSettings, open_store: StoreOpener
) -> None:
    async def scenario() -> None:
        async with open_store(jobs_database) as store:
            await store.create(type="chat", owner="a", team=None, model="m", spec={}, inputs=[{}])
            item = await store.claim("w", lease=30, types=["chat"], full_models=[])
            assert item is not None
            error = {"code": "gateway_busy", "message": "busy"}
            assert await store.release(item, error, max_attempts=3, delay=30)
            assert await store.claim("w", lease=30, types=["chat"], full_models=[]) is None
            # Its lease is gone: the late worker can neither record nor release it again.
            assert not await store.complete(item, {})
            assert not await store.release(item, error, max_attempts=3, delay=0)

    asyncio.run(scenario())


def test_the_per_model_cap_and_job_types_limit_claims(
    jobs_database: str, jobs_tokens: TokenSettings, open_store: StoreOpener
) -> None:
    async def scenario() -> None:
        async with open_store(jobs_database) as store:
            await store.create(
                type="chat", owner="a", team=None, model="m1", spec={}, inputs=chat(3, "m1")
            )
            assert await store.claim("w", lease=30, types=["eval"], full_models=[]) is None
            assert await store.claim("w", lease=30, types=["chat"], full_models=["m1"]) is None
            item = await store.claim("w", lease=30, types=["chat"], full_models=["m2"])
            assert item is not None and item.model == "m1"

    asyncio.run(scenario())


def test_claims_serve_the_owner_with_the_fewest_items_running_first(
    jobs_database: str, jobs_tokens: TokenSettings, open_store: StoreOpener
) -> None:
    """One owner's large job does not hold back another's later one: each claim takes an
    item of the owner with the fewest items running, the oldest job among equals."""

    async def scenario() -> None:
        async with open_store(jobs_database) as store:
            big = await store.create(
                type="chat", owner="big", team=None, model="m", spec={}, inputs=chat(5)
            )
            older = await store.create(
                type="chat", owner="small", team=None, model="m", spec={}, inputs=chat(1)
            )
            newer = await store.create(
                type="chat", owner="small", team=None, model="m", spec={}, inputs=chat(1)
            )
            claimed = []
            for _ in range(7):
                item = await store.claim("w", lease=30, types=["chat"], full_models=[])
                assert item is not None
                claimed.append((item.job_id, item.index))
            assert await store.claim("w", lease=30, types=["chat"], full_models=[]) is None
            assert claimed == [
                (big.id, 0),
                (older.id, 0),
                (big.id, 1),
                (newer.id, 0),
                (big.id, 2),
                (big.id, 3),
                (big.id, 4),
            ]
            # Running items count across an owner's jobs: a newer job of the owner with
            # fewer running goes first.
            await store.create(
                type="chat", owner="big", team=None, model="m", spec={}, inputs=chat(1)
            )
            third = await store.create(
                type="chat", owner="small", team=None, model="m", spec={}, inputs=chat(1)
            )
            item = await store.claim("w", lease=30, types=["chat"], full_models=[])
            assert item is not None and item.job_id == third.id

    asyncio.run(scenario())


def test_bad_items_fail_one_by_one_and_a_job_of_only_bad_items_fails(
    jobs_database: str, jobs_tokens: TokenSettings, open_store: StoreOpener
) -> None:
    async def scenario() -> None:
        async with (
            openai_stub.serving() as port,
            open_store(jobs_database) as store,
            httpx.AsyncClient() as http,
        ):
            mixed = await store.create(
                type="chat",
                owner="a",
                team=None,
                model="stub",
                spec={},
                inputs=[chat(1)[0], {"model": "stub"}, "not an object", chat(1)[0]],
            )
            bad = await store.create(
                type="chat", owner="a", team=None, model="stub", spec={}, inputs=[{"x": 1}]
            )
            async with running_worker(store, http, settings(jobs_database, jobs_tokens, "w", port)):
                assert await until_finished(store, mixed.id) == "done"
                assert await until_finished(store, bad.id) == "failed"
            outcomes = await store.outcomes(mixed.id)
            assert [o.state for o in outcomes] == ["done", "failed", "failed", "done"]
            assert outcomes[1].error == {
                "code": "invalid_item",
                "message": "an item needs a non-empty list of `messages`",
            }
            with pytest.raises(ValueError, match="at least one item"):
                await store.create(
                    type="chat", owner="a", team=None, model=None, spec={}, inputs=[]
                )

    asyncio.run(scenario())


def test_an_unreachable_gateway_is_retried_then_the_item_fails(
    jobs_database: str, jobs_tokens: TokenSettings, open_store: StoreOpener
) -> None:
    async def scenario() -> None:
        async with open_store(jobs_database) as store, httpx.AsyncClient() as http:
            job = await store.create(
                type="chat", owner="a", team=None, model="stub", spec={}, inputs=chat(1)
            )
            # Port 1 on loopback: nothing listens there.
            config = settings(jobs_database, jobs_tokens, "w", 1, max_attempts=2)
            async with running_worker(store, http, config):
                assert await until_finished(store, job.id) == "failed"
            rows = items(jobs_database, job.id)
            assert [(state, attempts) for _, state, attempts, *_ in rows] == [("failed", 2)]
            outcomes = await store.outcomes(job.id)
            assert outcomes[0].error is not None
            assert outcomes[0].error["code"] == "gateway_unreachable"

    asyncio.run(scenario())


@pytest.mark.minio
def test_a_finished_job_s_output_file_is_written_to_the_platform_store(
    jobs_database: str,
    jobs_tokens: TokenSettings,
    open_store: StoreOpener,
    platform_store: MinioServer,
    platform_bucket: str,
) -> None:
    store_settings = {
        "store_endpoint": platform_store.endpoint,
        "store_access_key": platform_store.access_key,
        "store_secret_key": SecretStr(platform_store.secret_key),
        "store_bucket": platform_bucket,
    }

    async def scenario() -> dict[str, Any]:
        async with (
            openai_stub.serving() as port,
            open_store(jobs_database) as store,
            httpx.AsyncClient() as http,
        ):
            job = await store.create(
                type="chat",
                owner="a",
                team=None,
                model="stub",
                spec={},
                inputs=[*chat(3), {"model": "stub"}],
            )
            config = settings(jobs_database, jobs_tokens, "w", port, **store_settings)
            async with running_worker(store, http, config):
                assert await until_finished(store, job.id) == "done"
                result = await until_written(store, job.id)
            return {"id": job.id, "result": result}

    written = asyncio.run(scenario())
    key = f"jobs/{written['id']}/output.jsonl"
    assert written["result"] == {"output": f"s3://{platform_bucket}/{key}", "output_lines": 4}
    config = StoreConfig(
        platform_store.endpoint, platform_store.access_key, SecretStr(platform_store.secret_key)
    )
    objects = ObjectStore("platform", config, 2)
    try:
        size = objects.stat(platform_bucket, key).size
        lines = objects.read(platform_bucket, key, 0, size).decode().splitlines()
    finally:
        objects.close()
    parsed = [json.loads(line) for line in lines]
    assert [(line["index"], line["state"]) for line in parsed] == [
        (0, "done"),
        (1, "done"),
        (2, "done"),
        (3, "failed"),
    ]
    assert parsed[0]["output"]["object"] == "chat.completion"
    assert parsed[3]["error"]["code"] == "invalid_item"
