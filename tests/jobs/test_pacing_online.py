"""Back-off on the real path: the gateway, the jobs service and SmolLM2 (`job_platform`).
A chat job runs at the engine's cap (4 items of the model at once) until online requests
of the same model come through the gateway: the gateway tells the job's items about them
(X-ModelServe-Online-* on their answers), and the worker halves the model's concurrency
down to 1; once the online requests stop, it climbs back to the cap. And the power
profile chosen in the gateway bounds the cap."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest

from modelserve.common.power_profiles import CONFIGMAP_NAME
from modelserve.jobs.pacing.pacer import Pacer
from modelserve.jobs.pacing.profile import ProfileReader
from modelserve.jobs.store import JobStore
from modelserve.testbed.job_platform import JobPlatform
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.polling import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]
StoreOpener = Callable[[str], contextlib.AbstractAsyncContextManager[JobStore]]
CAP = 4  # JOBS_MAX_PER_MODEL's default, which job_platform's jobs service runs with


@dataclass
class Samples:
    """(seconds since the start, the worker's limit, live leases) every 0.2 s."""

    rows: list[tuple[float, int | None, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def between(self, start: float, end: float) -> list[tuple[float, int | None, int]]:
        return [row for row in self.rows if start <= row[0] < end]


def model_limit(platform: JobPlatform) -> int | None:
    """The jobs service's `modelserve_jobs_model_concurrency` for SmolLM2."""
    text = httpx.get(f"{platform.jobs.url}/metrics", timeout=10).text
    found = re.search(
        r'^modelserve_jobs_model_concurrency\{model="' + re.escape(platform.model) + r'"\} (\S+)',
        text,
        re.MULTILINE,
    )
    return int(float(found.group(1))) if found else None


def live_leases(conn: psycopg.Connection, job_id: str) -> int:
    row = conn.execute(
        """SELECT count(*) FROM job_items
           WHERE job_id = %s AND state = 'running' AND lease_until > now()""",
        [job_id],
    ).fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def sampling(platform: JobPlatform, job_id: str) -> Iterator[Samples]:
    samples = Samples()
    started = time.monotonic()

    def sample() -> None:
        with psycopg.connect(platform.jobs_database, autocommit=True) as conn:
            while not samples.stop.wait(0.2):
                samples.rows.append(
                    (time.monotonic() - started, model_limit(platform), live_leases(conn, job_id))
                )

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        samples.stop.set()
        thread.join(timeout=10)


def create_job(platform: JobPlatform, open_store: StoreOpener, n: int) -> str:
    async def create() -> str:
        async with open_store(platform.jobs_database) as store:
            job = await store.create(
                type="chat",
                owner="pat",
                team=None,
                model=platform.model,
                spec={},
                inputs=[
                    {
                        "model": platform.model,
                        "messages": [{"role": "user", "content": f"Count to {i}."}],
                        "max_tokens": 4,
                        "temperature": 0,
                    }
                    for i in range(n)
                ],
            )
            return job.id

    return asyncio.run(create())


def test_job_concurrency_drops_while_online_requests_run_and_recovers_after(
    job_platform: JobPlatform, open_store: StoreOpener
) -> None:
    job_platform.user("pat").close()
    online = job_platform.user("olive")
    # Far more items than the test runs: it ends by cancelling the job.
    job_id = create_job(job_platform, open_store, 2000)
    with sampling(job_platform, job_id) as samples, online:
        # Alone, the job runs at the cap.
        wait_for(
            lambda: any(leases == CAP for _, _, leases in samples.rows),
            timeout=60,
            what=f"{CAP} items of the job running at once",
        )
        online_from = samples.rows[-1][0]
        # Twelve seconds of online requests one after the other, and at least three
        # (another test's load on this machine may make them slow).
        deadline, last = time.monotonic() + 12, time.monotonic() + 90
        answered = 0
        while (time.monotonic() < deadline or answered < 3) and time.monotonic() < last:
            answer = online.post(
                "/v1/chat/completions",
                json={
                    "model": job_platform.model,
                    "messages": [{"role": "user", "content": "Say hello."}],
                    "max_tokens": 8,
                    "temperature": 0,
                },
            )
            assert answer.status_code == 200, answer.text
            answered += 1
        online_until = samples.rows[-1][0]
        # Calm again: the limit climbs back to the cap.
        wait_for(
            lambda: any(limit == CAP for at, limit, _ in samples.rows if at > online_until),
            timeout=60,
            what="the job's concurrency to come back to the cap",
        )
    with job_platform.admin() as admin:
        assert admin.post(f"/jobs/{job_id}/cancel").status_code == 200

    during = samples.between(online_from, online_until)
    assert answered >= 3 and during
    limits = [limit for _, limit, _ in during if limit is not None]
    assert min(limits) <= 1, during  # one item, or paused (JOBS_BACKOFF_FLOOR 0)
    # What ran follows the limit: at most one item at once for a while.
    assert any(leases <= 1 for _, _, leases in during[len(during) // 2 :]), during


def test_the_power_profile_chosen_in_the_gateway_bounds_the_engine_s_cap(
    job_platform: JobPlatform, crds: KubeCluster
) -> None:
    """The reader the worker runs every JOBS_PROFILE_SECONDS, against the real gateway
    and its ConfigMap: no profile chosen leaves the engine's own cap; `quiet` (one job
    at a time) brings it to 1; `max` (2) to 2."""

    def no_profile() -> None:
        crds.kubectl(
            "delete", "configmap", CONFIGMAP_NAME, "-n", "modelserve", "--ignore-not-found"
        )

    async def read_cap() -> int:
        async with httpx.AsyncClient() as http:
            reader = ProfileReader(http, job_platform.gateway.url, job_platform.signer)
            pacer = Pacer(CAP, None)
            pacer.set_profile(await reader.read())
            return pacer.cap()

    no_profile()
    try:
        assert asyncio.run(read_cap()) == CAP
        with job_platform.admin() as admin:
            for profile, cap in (("quiet", 1), ("max", 2)):
                chosen = admin.post("/settings/power_profile", params={"profile": profile})
                assert chosen.status_code == 200, chosen.text
                assert asyncio.run(read_cap()) == cap
    finally:
        no_profile()
    assert asyncio.run(read_cap()) == CAP
