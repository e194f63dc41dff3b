"""modelserve.client's job methods and the `modelserve jobs` CLI on the real path: the
gateway passes /jobs through to the jobs service, which runs chat items on SmolLM2 as
their owner (`job_platform`). Jobs are made in the store as a job type's route would;
a job of a type no worker runs (`client_idle`) stays pending, to be cancelled or waited
for in vain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from modelserve.client import AsyncClient, Client, ModelServeError
from modelserve.client.jobs.answers import Job
from modelserve.jobs.store import JobStore
from modelserve.testbed.job_platform import JobPlatform

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]
StoreOpener = Callable[[str], contextlib.AbstractAsyncContextManager[JobStore]]
IDLE = "client_idle"  # no executor runs this type: its jobs stay pending


def create_job(
    platform: JobPlatform, open_store: StoreOpener, owner: str, n: int, type: str = "chat"
) -> str:
    async def create() -> str:
        async with open_store(platform.jobs_database) as store:
            job = await store.create(
                type=type,
                owner=owner,
                team=None,
                model=platform.model,
                spec={},
                inputs=[
                    {
                        "model": platform.model,
                        "messages": [{"role": "user", "content": f"Say {i}."}],
                        "max_tokens": 4,
                        "temperature": 0,
                    }
                    for i in range(n)
                ],
            )
            return job.id

    return asyncio.run(create())


def client_of(platform: JobPlatform, name: str) -> Client:
    platform.user(name).close()
    return Client(platform.gateway.url, platform.token(name), timeout=60)


def modelserve(platform: JobPlatform, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "modelserve"
    return subprocess.run(
        [cli, *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={"MODELSERVE_URL": platform.gateway.url, "MODELSERVE_TOKEN": platform.token(name)},
        check=False,
    )


def test_wait_list_stats_and_cancel_through_the_gateway(
    job_platform: JobPlatform, open_store: StoreOpener
) -> None:
    with client_of(job_platform, "dana") as dana, client_of(job_platform, "erin") as erin:
        job_id = create_job(job_platform, open_store, "dana", 3)
        seen: list[Job] = []
        ended = dana.wait_for_job(job_id, timeout=240, poll_interval=0.2, on_progress=seen.append)
        assert (ended.id, ended.status, ended.done, ended.failed) == (job_id, "done", 3, 0)
        assert ended.progress is not None and ended.progress.fraction == 1.0
        assert ended.progress.rate is not None and ended.progress.rate > 0
        assert ended.progress.eta_seconds == 0
        finished = [job.done + job.failed for job in seen]
        assert finished == sorted(finished) and finished[-1] == 3 and seen[-1] == ended

        assert dana.get_job(job_id).status == "done"
        assert job_id in [job.id for job in dana.list_jobs(type="chat")]
        (newest,) = dana.list_jobs(status="done", limit=1)
        assert newest.id == job_id
        assert dana.list_jobs(type=IDLE) == []
        stats = dana.job_stats()
        assert stats.done == 1 and stats.jobs_last_hour == 1 and stats.failed == 0

        with pytest.raises(ModelServeError) as hidden:
            erin.get_job(job_id)
        assert (hidden.value.status, hidden.value.code) == (404, "job_not_found")
        assert erin.list_jobs() == []

        idle = create_job(job_platform, open_store, "dana", 2, type=IDLE)
        with pytest.raises(ModelServeError) as waited:
            dana.wait_for_job(idle, timeout=0.5, poll_interval=0.2)
        assert waited.value.code == "timeout" and waited.value.status is None
        assert waited.value.details["id"] == idle and waited.value.details["status"] == "pending"
        cancelled = dana.cancel_job(idle)
        assert (cancelled.status, cancelled.done) == ("cancelled", 0)
        assert dana.cancel_job(idle).status == "cancelled"  # again: as it is
        assert dana.wait_for_job(idle, timeout=5).status == "cancelled"
        with pytest.raises(ModelServeError) as finished_already:
            dana.cancel_job(job_id)
        assert (finished_already.value.status, finished_already.value.code) == (
            409,
            "job_finished",
        )


def test_the_async_client_waits_as_the_sync_one(
    job_platform: JobPlatform, open_store: StoreOpener
) -> None:
    job_platform.user("fiona").close()
    job_id = create_job(job_platform, open_store, "fiona", 2)

    async def wait() -> tuple[Job, list[Job]]:
        async with AsyncClient(job_platform.gateway.url, job_platform.token("fiona")) as client:
            ended = await client.wait_for_job(job_id, timeout=240, poll_interval=0.2)
            return ended, await client.list_jobs()

    ended, listed = asyncio.run(wait())
    assert (ended.status, ended.done, ended.total) == ("done", 2, 2)
    assert [job.id for job in listed] == [job_id]


def test_the_cli_waits_with_a_progress_bar(
    job_platform: JobPlatform, open_store: StoreOpener
) -> None:
    job_platform.user("gus").close()
    job_id = create_job(job_platform, open_store, "gus", 2)
    waited = modelserve(job_platform, "gus", "jobs", "wait", job_id, "--poll-interval", "0.2")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] == "done"
    last = waited.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert " 2/2, " in last and "items/s, ETA 00:00, done" in last, waited.stderr

    listed = modelserve(job_platform, "gus", "jobs", "list", "--type", "chat")
    assert [job["id"] for job in json.loads(listed.stdout)] == [job_id]
    assert json.loads(modelserve(job_platform, "gus", "jobs", "stats").stdout)["done"] == 1

    idle = create_job(job_platform, open_store, "gus", 1, type=IDLE)
    cancelled = modelserve(job_platform, "gus", "jobs", "cancel", idle)
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    gave_up = modelserve(job_platform, "gus", "jobs", "wait", idle, "--max-wait", "5")
    assert gave_up.returncode == 3 and json.loads(gave_up.stdout)["status"] == "cancelled"
    missing = modelserve(job_platform, "gus", "jobs", "get", "job_missing")
    assert missing.returncode == 1
    assert json.loads(missing.stderr)["error"]["code"] == "job_not_found"
