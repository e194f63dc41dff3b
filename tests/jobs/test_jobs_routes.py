"""/jobs of the jobs service as a real process on real PostgreSQL: listing and
statistics per caller, one job, cancellation, and bad input as JSON errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import httpx
import pytest

from modelserve.common.tokens import TokenSigner
from modelserve.jobs.store import JobStore
from modelserve.testbed.platform import RunningService
from modelserve.testbed.testing_clients import token_clients

pytestmark = pytest.mark.postgres
StoreOpener = Callable[[str], contextlib.AbstractAsyncContextManager[JobStore]]
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def clients(jobs_signer: TokenSigner) -> Iterator[Callable[..., httpx.Client]]:
    with token_clients(jobs_signer) as make:
        yield make


def seed_jobs(url: str, open_store: StoreOpener) -> dict[str, list[str]]:
    """alice: two chat jobs (one cancelled), one eval job; bob: one chat job."""

    async def seed() -> dict[str, list[str]]:
        async with open_store(url) as store:
            made: dict[str, list[str]] = {"alice": [], "bob": []}
            for owner, type in (
                ("alice", "chat"),
                ("alice", "chat"),
                ("alice", "eval"),
                ("bob", "chat"),
            ):
                job = await store.create(
                    type=type, owner=owner, team=None, model="m", spec={}, inputs=[BODY] * 3
                )
                made[owner].append(job.id)
            await store.cancel(made["alice"][1], visible_to="alice")
            return made

    return asyncio.run(seed())


def finish_one_job(url: str, open_store: StoreOpener) -> str:
    """A job of alice's of one item, run to its end here (by the store's own calls)."""

    async def run() -> str:
        async with open_store(url) as store:
            job = await store.create(
                type="solo", owner="alice", team=None, model=None, spec={}, inputs=[{}]
            )
            item = await store.claim("here", lease=30, types=["solo"], full_models=[])
            assert item is not None
            assert await store.complete(item, {"ok": True})
            done = await store.get(job.id, visible_to=None)
            assert done is not None and done.status == "done"
            return job.id

    return asyncio.run(run())


def test_listing_and_stats_per_caller(
    start_jobs: Callable[..., RunningService],
    jobs_database: str,
    open_store: StoreOpener,
    clients: Callable[..., httpx.Client],
) -> None:
    service = start_jobs()  # no gateway: this replica runs no items, the jobs stay pending
    made = seed_jobs(jobs_database, open_store)
    alice = clients(service.url, "alice")
    bob = clients(service.url, "bob")
    admin = clients(service.url, "root", roles=["admin"])

    mine = alice.get("/jobs")
    assert mine.status_code == 200
    assert mine.headers["X-Total-Count"] == "3"
    assert {job["id"] for job in mine.json()} == set(made["alice"])
    assert [job["id"] for job in mine.json()] == list(reversed(made["alice"]))  # newest first
    first = mine.json()[0]
    assert first["progress"] == {
        "total": 3,
        "done": 0,
        "failed": 0,
        "fraction": 0.0,
        "rate": None,
        "eta_seconds": None,
    }

    page = alice.get("/jobs", params={"limit": 1, "offset": 1})
    assert page.headers["X-Total-Count"] == "3"
    assert [job["id"] for job in page.json()] == [made["alice"][1]]
    chats = alice.get("/jobs", params={"type": "chat", "status": "pending"})
    assert [job["id"] for job in chats.json()] == [made["alice"][0]]
    assert admin.get("/jobs").headers["X-Total-Count"] == "4"

    assert alice.get("/jobs/stats").json() == {
        "pending": 2,
        "running": 0,
        "done": 0,
        "failed": 0,
        "jobs_last_hour": 3,
    }
    assert bob.get("/jobs/stats").json()["jobs_last_hour"] == 1
    assert admin.get("/jobs/stats").json()["pending"] == 3

    assert alice.get(f"/jobs/{made['alice'][0]}").json()["owner"] == "alice"
    hidden = alice.get(f"/jobs/{made['bob'][0]}")
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "job_not_found"
    assert admin.get(f"/jobs/{made['bob'][0]}").status_code == 200


def test_cancel_and_bad_input(
    start_jobs: Callable[..., RunningService],
    jobs_database: str,
    open_store: StoreOpener,
    clients: Callable[..., httpx.Client],
) -> None:
    service = start_jobs()
    made = seed_jobs(jobs_database, open_store)
    alice = clients(service.url, "alice")
    bob = clients(service.url, "bob")

    assert bob.post(f"/jobs/{made['alice'][0]}/cancel").status_code == 404
    cancelled = alice.post(f"/jobs/{made['alice'][0]}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = alice.post(f"/jobs/{made['alice'][0]}/cancel")
    assert again.status_code == 200
    assert again.json()["finished_at"] == cancelled.json()["finished_at"]
    finished = alice.post(f"/jobs/{finish_one_job(jobs_database, open_store)}/cancel")
    assert finished.status_code == 409
    assert finished.json()["error"]["code"] == "job_finished"

    for params in (
        {"status": "bogus"},
        {"limit": 0},
        {"limit": 5000},
        {"offset": -1},
        {"type": "Not A Type"},
    ):
        answer = alice.get("/jobs", params=params)
        assert answer.status_code == 422, params
        assert "error" in answer.json()
    anonymous = httpx.get(f"{service.url}/jobs")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"]


def test_a_nul_character_in_an_id_is_a_400_not_a_500(
    start_jobs: Callable[..., RunningService], jobs_signer: TokenSigner
) -> None:
    service = start_jobs()
    headers = {"Authorization": f"Bearer {jobs_signer.sign('alice')}"}
    for method, path in (("GET", "/jobs/job_%00x"), ("POST", "/jobs/job_%00x/cancel")):
        answer = httpx.request(method, f"{service.url}{path}", headers=headers, timeout=30)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_input"
