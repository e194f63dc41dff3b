"""Each job item's calls to the gateway carry a request id that names the item
(`job-<job id>-<index>-<attempt>`), so that the gateway's, the contract service's and the
model server's logs of it can be found; the worker's items run against a recording server
in the gateway's place (real HTTP on loopback, real PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from modelserve.common.request_ids import carry_request_id
from modelserve.common.tokens import TokenSettings
from modelserve.jobs.app import build_executors
from modelserve.jobs.settings import JobsSettings
from modelserve.jobs.store import JobStore
from modelserve.jobs.worker import Worker
from modelserve.testbed.recording_upstream import RecordingUpstream

pytestmark = pytest.mark.postgres
StoreOpener = Callable[[str], contextlib.AbstractAsyncContextManager[JobStore]]


def test_each_item_s_call_to_the_gateway_names_the_item(
    jobs_database: str, jobs_tokens: TokenSettings, open_store: StoreOpener
) -> None:
    with RecordingUpstream("recorded", chunks=3) as gateway:
        settings = JobsSettings(
            database_url=SecretStr(jobs_database),
            gateway_url=gateway.url.removesuffix("/v1"),
            tokens=jobs_tokens,
            worker_id="w1",
            poll_seconds=0.05,
            renew_seconds=0.2,
            lease_seconds=2.0,
        )

        async def scenario() -> str:
            hooks = {"request": [carry_request_id]}
            async with (
                open_store(jobs_database) as store,
                httpx.AsyncClient(event_hooks=hooks) as http,
            ):
                inputs = [
                    {"model": "recorded", "messages": [{"role": "user", "content": f"item {i}"}]}
                    for i in range(3)
                ]
                job = await store.create(
                    type="chat", owner="alice", team=None, model="recorded", spec={}, inputs=inputs
                )
                worker = asyncio.create_task(
                    Worker(settings, store, build_executors(settings, http), None).run()
                )
                try:
                    async with asyncio.timeout(60):
                        while (found := await store.get(job.id, visible_to=None)) is not None:
                            if found.status in ("done", "failed", "cancelled"):
                                assert found.status == "done"
                                break
                            await asyncio.sleep(0.05)
                finally:
                    worker.cancel()
                    await asyncio.gather(worker, return_exceptions=True)
                return job.id

        job_id = asyncio.run(scenario())
    ids = sorted(headers.get("x-request-id", "") for headers in gateway.headers)
    assert ids == [f"job-{job_id}-{index}-1" for index in range(3)]
