"""The engine on real PostgreSQL (and MinIO) when things go wrong: the gateway busy (429,
503) costs an item no attempt, up to a limit; items of a cancelled job are given up at
once so that its files wait for no lease; a straggler cannot add an outcome to a job whose
files are written; a finisher that fails holds up no other job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from modelserve.common.objects import ObjectStore, StoreConfig
from modelserve.jobs.outputs import FinishFailed, JobFiles, OutputWriter
from modelserve.jobs.store import Job, JobStore
from modelserve.testbed.objectstores import MinioServer

pytestmark = pytest.mark.postgres
StoreOpener = Callable[[str], contextlib.AbstractAsyncContextManager[JobStore]]


def chat(n: int) -> list[dict[str, Any]]:
    return [{"model": "m", "messages": [{"role": "user", "content": str(i)}]} for i in range(n)]


def test_busy_answers_cost_no_attempt_up_to_a_limit(
    jobs_database: str, open_store: StoreOpener
) -> None:
    async def scenario() -> None:
        async with open_store(jobs_database) as store:
            job = await store.create(
                type="chat", owner="alice", team=None, model="m", spec={}, inputs=chat(1)
            )
            busy = {"code": "gateway_busy", "message": "429"}
            for _ in range(3):
                held = await store.claim("w", lease=30, types=["chat"], full_models=[])
                assert held is not None and held.attempts == 1  # given back each time
                assert await store.release(
                    held, busy, max_attempts=2, delay=0, busy=True, max_busy=3
                )
            # The fourth busy answer is past the limit: it counts like any failure...
            held = await store.claim("w", lease=30, types=["chat"], full_models=[])
            assert held is not None and held.attempts == 1
            assert await store.release(held, busy, max_attempts=2, delay=0, busy=True, max_busy=3)
            held = await store.claim("w", lease=30, types=["chat"], full_models=[])
            assert held is not None and held.attempts == 2
            # ...and the last attempt fails the item.
            await store.release(held, busy, max_attempts=2, delay=0, busy=True, max_busy=3)
            done = await store.get(job.id, visible_to=None)
            assert done is not None and (done.status, done.failed) == ("failed", 1)

    asyncio.run(scenario())


def test_a_cancelled_job_s_items_are_given_up_and_a_straggler_adds_nothing(
    jobs_database: str,
    open_store: StoreOpener,
    platform_store: MinioServer,
    platform_bucket: str,
) -> None:
    async def scenario() -> None:
        config = StoreConfig(
            platform_store.endpoint, platform_store.access_key, SecretStr(platform_store.secret_key)
        )
        objects = ObjectStore("platform", config, 2)
        try:
            async with open_store(jobs_database) as store:
                writer = OutputWriter(store.pool, objects, platform_bucket)
                job = await store.create(
                    type="chat", owner="alice", team=None, model="m", spec={}, inputs=chat(2)
                )
                first = await store.claim("w", lease=30, types=["chat"], full_models=[])
                second = await store.claim("w", lease=30, types=["chat"], full_models=[])
                assert first is not None and second is not None
                assert await store.complete(first, {"answer": 1})
                await store.cancel(job.id, visible_to=None)
                # The second item's lease is live: the job's files wait for it...
                assert await writer.write_next() is None
                # ...until its worker, told by its renewal, gives it up.
                assert await store.renew("w", [second], lease=30) == set()
                assert await store.abandon("w", [second]) == 1
                assert await writer.write_next() == job.id
                # The straggler's answer, arriving after the files, changes nothing.
                assert not await store.complete(second, {"answer": 2})
                written = await store.get(job.id, visible_to=None)
                assert written is not None and written.done == 1
                assert written.result is not None and written.result["output_lines"] == 1
        finally:
            objects.close()

    asyncio.run(scenario())


def test_a_failing_finisher_holds_up_no_other_job(
    jobs_database: str,
    open_store: StoreOpener,
    platform_store: MinioServer,
    platform_bucket: str,
) -> None:
    async def broken(job: Job, files: JobFiles) -> dict[str, Any]:
        raise KeyError("a finisher's bug")

    async def scenario() -> None:
        config = StoreConfig(
            platform_store.endpoint, platform_store.access_key, SecretStr(platform_store.secret_key)
        )
        objects = ObjectStore("platform", config, 2)
        try:
            async with open_store(jobs_database) as store:
                writer = OutputWriter(store.pool, objects, platform_bucket, {"bad": broken})
                jobs = []
                for kind in ("bad", "chat"):
                    job = await store.create(
                        type=kind, owner="alice", team=None, model="m", spec={}, inputs=chat(1)
                    )
                    held = await store.claim("w", lease=30, types=[kind], full_models=[])
                    assert held is not None and await store.complete(held, {"ok": True})
                    jobs.append(job.id)
                with pytest.raises(FinishFailed) as failed:
                    await writer.write_next()
                assert failed.value.job_id == jobs[0]
                # Left aside, the next job is finished; the failed one has no result.
                assert await writer.write_next(exclude=[jobs[0]]) == jobs[1]
                bad = await store.get(jobs[0], visible_to=None)
                assert bad is not None and bad.result is None
        finally:
            objects.close()

    asyncio.run(scenario())
