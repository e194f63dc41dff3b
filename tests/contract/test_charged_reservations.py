"""Usage is never free: a reservation nobody settles in time (its gateway crashed mid-request)
is charged, its tokens counted as used; a usage record that comes later corrects it to the
tokens really used, and the request is counted once. The real service on real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.platform import RunningService, start_service
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.testing_clients import token_clients


@pytest.fixture
def quick(
    database_url: str, contract_environment: Callable[..., dict[str, str]], testbed_dir: Path
) -> Iterator[tuple[RunningService, str]]:
    """A contract service whose reservations expire after 1 s (and are looked for every
    second), on a schema of its own: (the service, its database URL)."""
    with fresh_schema(database_url, "contract_charged") as schema:
        database = schema_url(database_url, schema)
        service = start_service(
            "contract",
            testbed_dir / "logs",
            contract_environment(CONTRACT_DATABASE_URL=database, CONTRACT_RESERVATION_SECONDS="1"),
        )
        try:
            yield service, database
        finally:
            service.stop()


def charged(database: str, reservation: str) -> bool:
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT charged_at IS NOT NULL FROM reservations WHERE id = %s", [reservation]
        ).fetchone()
    return bool(row and row[0])


def budget_counter(database: str, user: str) -> tuple[int, int]:
    """(used, reserved) of the user's tokens this month."""
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT used, reserved FROM counters WHERE scope = %s AND metric = 'tokens/month'",
            [f"user:{user}"],
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_charged_reservation_settled_late_counts_once_at_its_real_size(
    quick: tuple[RunningService, str], signer: TokenSigner
) -> None:
    service, database = quick
    user = f"u-{uuid.uuid4().hex[:8]}"
    with token_clients(signer) as make:
        admin = make(service.url, "root", roles=("admin",))
        gateway = make(service.url, "service:gateway", roles=("service",))
        assert admin.put(f"/contracts/user/{user}", json={"token_budget": 1000}).is_success

        def decide(max_tokens: int, **more: Any) -> dict[str, Any]:
            body = {
                "principal": {"subject": user},
                "action": "infer",
                "resource": {"model": "smollm2", "max_tokens": max_tokens},
                **more,
            }
            answer = gateway.post("/decide", json=body)
            assert answer.status_code == 200, answer.text
            result: dict[str, Any] = answer.json()
            return result

        def usage() -> tuple[int, int, int]:
            found = admin.get("/usage", params={"user": user, "period": "day"}).json()
            return found["requests"], found["prompt_tokens"], found["completion_tokens"]

        def late_record(reservation: str, prompt: int, completion: int) -> httpx.Response:
            record = {
                "id": str(uuid.uuid4()),
                "principal": {"subject": user},
                "model": "smollm2",
                "reservation": reservation,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
            }
            answer = gateway.post("/usage", json=record)
            assert answer.status_code == 200, answer.text
            return answer

        # A request that never reports its usage: its 400 tokens are charged at expiry.
        first = decide(400)["reservation"]
        wait_for(lambda: charged(database, first), timeout=30, what="the reservation charged")
        assert budget_counter(database, user) == (400, 0)
        assert usage() == (1, 0, 400)
        # Charged, not given back: 700 more would go over the budget of 1000.
        assert decide(700, dry_run=True)["reason"] == "token_budget_exhausted"

        # Its record arrives late: 20 + 30 tokens. Corrected, still one request.
        answer = late_record(first, 20, 30)
        assert answer.json() == {"recorded": True, "reservation_found": True}
        assert budget_counter(database, user) == (50, 0)
        assert usage() == (1, 20, 30)
        assert decide(700, dry_run=True)["allowed"]
        # Settled: the reservation is gone; the same reservation again is a new request.
        with psycopg.connect(database, autocommit=True) as conn:
            left = conn.execute("SELECT count(*) FROM reservations WHERE id = %s", [first])
            assert left.fetchone() == (0,)

        # A late record larger than the charge adds the difference.
        second = decide(100)["reservation"]
        wait_for(lambda: charged(database, second), timeout=30, what="the second one charged")
        assert budget_counter(database, user) == (150, 0)
        assert usage() == (2, 20, 130)
        late_record(second, 100, 200)
        assert budget_counter(database, user) == (350, 0)
        assert usage() == (2, 120, 230)


def test_charged_reservations_are_deleted_after_the_receipt_days(
    quick: tuple[RunningService, str], signer: TokenSigner
) -> None:
    service, database = quick
    user = f"u-{uuid.uuid4().hex[:8]}"
    with token_clients(signer) as make:
        gateway = make(service.url, "service:gateway", roles=("service",))
        answer = gateway.post(
            "/decide",
            json={
                "principal": {"subject": user},
                "action": "infer",
                "resource": {"model": "smollm2", "max_tokens": 10},
            },
        )
        reservation = answer.json()["reservation"]
    wait_for(lambda: charged(database, reservation), timeout=30, what="the reservation charged")
    with psycopg.connect(database, autocommit=True) as conn:
        # Kept until RECEIPT_DAYS after the charge: made to look that old.
        kept = conn.execute(
            "SELECT expires_at - charged_at > interval '6 days' FROM reservations WHERE id = %s",
            [reservation],
        ).fetchone()
        assert kept == (True,)
        conn.execute(
            "UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = %s",
            [reservation],
        )

        def gone() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM reservations WHERE id = %s", [reservation]
            ).fetchone()
            return row == (0,)

        wait_for(gone, timeout=30, what="the old charged reservation to be deleted")
    # Deleted, not charged again.
    assert budget_counter(database, user) == (10, 0)
