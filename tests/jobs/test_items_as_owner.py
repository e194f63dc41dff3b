"""Items run as their job's owner, through the real gateway: the gateway delegates a
token for the owner (`POST /auth/delegate`, services only), authorises each item under
the owner's contract and counts its usage for them; a disabled owner's items stop."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import psycopg.types.json
import pytest

from modelserve.jobs.store import JobStore
from modelserve.testbed.job_platform import JobPlatform
from modelserve.testbed.polling import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]
StoreOpener = Callable[[str], contextlib.AbstractAsyncContextManager[JobStore]]


def create_chat_job(
    platform: JobPlatform, open_store: StoreOpener, owner: str, team: str | None, n: int
) -> str:
    return platform.queue_chat(owner, team, n)


def job_row(platform: JobPlatform, job_id: str) -> dict[str, Any]:
    with psycopg.connect(platform.jobs_database) as conn:
        row = conn.execute(
            "SELECT status, done, failed FROM jobs WHERE id = %s", [job_id]
        ).fetchone()
    assert row is not None
    return {"status": row[0], "done": row[1], "failed": row[2]}


def finished(platform: JobPlatform, job_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        row = job_row(platform, job_id)
        return row if row["status"] in ("done", "failed", "cancelled") else None

    result: dict[str, Any] = wait_for(check, timeout=180, what=f"job {job_id} to finish")
    return result


def test_delegation_is_for_the_jobs_service_only(job_platform: JobPlatform) -> None:
    with job_platform.user("mallory") as mallory:
        refused = mallory.post("/auth/delegate", json={"sub": "admin"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "service_only"
    other = job_platform.signer.service_token("download")
    refused = httpx.post(
        f"{job_platform.gateway.url}/auth/delegate",
        json={"sub": "admin"},
        headers={"Authorization": f"Bearer {other}"},
        timeout=30,
    )
    assert refused.status_code == 403  # only GATEWAY_DELEGATING_SERVICES (jobs)
    assert refused.json()["error"]["code"] == "service_only"
    service = job_platform.signer.service_token("jobs")
    unknown = httpx.post(
        f"{job_platform.gateway.url}/auth/delegate",
        json={"sub": "nobody-here"},
        headers={"Authorization": f"Bearer {service}"},
        timeout=30,
    )
    assert unknown.status_code == 403
    assert unknown.json()["error"]["code"] == "delegation_refused"


def test_items_are_counted_for_their_owner_and_stop_when_the_owner_is_disabled(
    job_platform: JobPlatform, open_store: StoreOpener
) -> None:
    job_platform.user("carol", team="labs").close()
    job_id = create_chat_job(job_platform, open_store, "carol", "labs", 3)
    assert finished(job_platform, job_id) == {"status": "done", "done": 3, "failed": 0}

    admin_token = job_platform.signer.sign("root", roles=["admin"])

    def usage() -> dict[str, Any] | None:
        answer = httpx.get(
            f"{job_platform.contract.url}/usage",
            params={"user": "carol", "period": "day"},
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        counted: dict[str, Any] = answer.json()
        return counted if counted["requests"] >= 3 else None

    counted = wait_for(usage, timeout=30, what="carol's 3 items to be counted for her")
    assert counted["requests"] == 3 and counted["completion_tokens"] > 0

    with job_platform.admin() as admin:
        disabled = admin.patch("/users/carol", json={"disabled": True})
        assert disabled.status_code == 200, disabled.text
    stopped = create_chat_job(job_platform, open_store, "carol", "labs", 2)
    assert finished(job_platform, stopped) == {"status": "failed", "done": 0, "failed": 2}
    with psycopg.connect(job_platform.jobs_database) as conn:
        codes = conn.execute(
            "SELECT DISTINCT error->>'code' FROM job_items WHERE job_id = %s", [stopped]
        ).fetchall()
    assert codes == [("owner_not_allowed",)]


def test_work_queued_before_the_owner_revoked_their_sessions_stops(
    job_platform: JobPlatform, open_store: StoreOpener
) -> None:
    """A password change voids the owner's tokens; a job queued before it (perhaps with a
    stolen token) gets no delegation, one queued after it runs."""
    job_platform.user("dave", team="labs").close()
    with job_platform.admin() as admin:
        changed = admin.put("/users/dave/password", json={"password": "dave-new-password-2"})
        assert changed.status_code == 204, changed.text
    body = {
        "model": job_platform.model,
        "messages": [{"role": "user", "content": "Say 1."}],
        "max_tokens": 2,
    }
    with psycopg.connect(job_platform.jobs_database) as conn, conn.transaction():
        # Queued an hour ago, before the password change.
        conn.execute(
            """INSERT INTO jobs (id, type, owner, team, model, total, spec, created_at)
               VALUES ('job_before_change', 'chat', 'dave', 'labs', %s, 1, '{}',
                       now() - interval '1 hour')""",
            [job_platform.model],
        )
        conn.execute(
            "INSERT INTO job_items (job_id, index, input) VALUES ('job_before_change', 0, %s)",
            [psycopg.types.json.Jsonb(body)],
        )
    assert finished(job_platform, "job_before_change") == {
        "status": "failed",
        "done": 0,
        "failed": 1,
    }
    with psycopg.connect(job_platform.jobs_database) as conn:
        error = conn.execute(
            "SELECT error FROM job_items WHERE job_id = 'job_before_change'"
        ).fetchone()
    assert error is not None and error[0]["code"] == "owner_not_allowed"
    assert "revoked their sessions" in error[0]["message"]
    # Revocation is by whole seconds (the not-before is the next one): work queued in the
    # second of the change counts as queued before it.
    time.sleep(1.1)
    after = create_chat_job(job_platform, open_store, "dave", "labs", 1)
    assert finished(job_platform, after) == {"status": "done", "done": 1, "failed": 0}


def test_a_passed_through_answer_carries_one_request_id(job_platform: JobPlatform) -> None:
    """The gateway sends the jobs service the request's id and answers it once itself
    (the jobs service's own header is not passed back beside it)."""
    with job_platform.user("quinn") as quinn:
        asked = quinn.get("/jobs", headers={"X-Request-ID": "trace-jobs-quinn"})
        made = quinn.get("/jobs")
    assert asked.status_code == 200, asked.text
    assert asked.headers.get_list("x-request-id") == ["trace-jobs-quinn"]
    assert made.status_code == 200, made.text
    (made_id,) = made.headers.get_list("x-request-id")

    def logged() -> bool:
        text = job_platform.jobs.process.log_path.read_text()
        return "trace-jobs-quinn" in text and made_id in text

    wait_for(logged, timeout=15, what="the jobs service to log both requests' ids")
