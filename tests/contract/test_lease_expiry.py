"""Leases are never free: one its holder neither renews nor gives back (the gateway died)
is charged at expiry, what it still held counted as used; one given back whose usage
records never come is charged what was taken and not settled; late records correct a
charge; renewing keeps a lease. The real service on real PostgreSQL, with leases and
reservations of two seconds (the housekeeping then looks every two seconds)."""

from __future__ import annotations

import time
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


@pytest.fixture(scope="module")
def quick(
    database_url: str, contract_environment: Callable[..., dict[str, str]], testbed_dir: Path
) -> Iterator[tuple[RunningService, str]]:
    """A contract service whose leases and reservations last 2 s, on a schema of its own:
    (the service, its database URL). For the whole module: every test has a user of its own."""
    with fresh_schema(database_url, "contract_leases") as schema:
        database = schema_url(database_url, schema)
        service = start_service(
            "contract",
            testbed_dir / "logs",
            contract_environment(
                CONTRACT_DATABASE_URL=database,
                CONTRACT_LEASE_SECONDS="2",
                CONTRACT_RESERVATION_SECONDS="2",
            ),
        )
        try:
            yield service, database
        finally:
            service.stop()


@pytest.fixture
def clients(
    quick: tuple[RunningService, str], signer: TokenSigner
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(the gateway's client, an admin's) of the quick service."""
    service, _ = quick
    with token_clients(signer) as make:
        yield (
            make(service.url, "service:gateway", roles=("service",)),
            make(service.url, "root", roles=("admin",)),
        )


def budget(database: str, user: str) -> tuple[int, int]:
    """(used, reserved) of the user's tokens this month."""
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT used, reserved FROM counters WHERE scope = %s AND metric = 'tokens/month'",
            [f"user:{user}"],
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def lease_state(database: str, lease: str) -> tuple[Any, ...] | None:
    """(taken, settled, charged) of the lease; None once deleted."""
    with psycopg.connect(database, autocommit=True) as conn:
        return conn.execute(
            "SELECT taken, settled, charged_at IS NOT NULL FROM leases WHERE id = %s", [lease]
        ).fetchone()


def charged(database: str, lease: str) -> bool:
    state = lease_state(database, lease)
    return bool(state and state[2])


class Holder:
    """A gateway process holding leases of one user's monthly token budget."""

    def __init__(self, gateway: httpx.Client, user: str, name: str = "gateway-0-pid1") -> None:
        self.gateway = gateway
        self.user = user
        self.name = name

    def call(self, **body: Any) -> dict[str, Any]:
        answer = self.gateway.post("/leases", json={"holder": self.name, **body})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def grant(self, amount: int) -> str:
        answer = self.call(
            principal={"subject": self.user},
            want=[{"scope": f"user:{self.user}", "metric": "tokens/month", "amount": amount}],
        )
        (grant,) = answer["leases"]
        assert grant["granted"] == amount
        lease: str = grant["lease"]
        return lease

    def record(self, lease: str, hold: int, tokens: int) -> None:
        record = {
            "id": str(uuid.uuid4()),
            "principal": {"subject": self.user},
            "model": "m",
            "prompt_tokens": tokens,
            "completion_tokens": 0,
            "counters": [
                {"scope": f"user:{self.user}", "metric": "tokens/month", "lease": lease,
                 "hold": hold},
            ],
        }  # fmt: skip
        answer = self.gateway.post("/usage", json=record)
        assert answer.status_code == 200, answer.text


def test_a_lease_not_given_back_is_charged_and_corrected_by_late_records(
    quick: tuple[RunningService, str], clients: tuple[httpx.Client, httpx.Client]
) -> None:
    _, database = quick
    gateway, admin = clients
    user = f"u-{uuid.uuid4().hex[:8]}"
    assert admin.put(f"/contracts/user/{user}", json={"token_budget": 1000}).is_success
    holder = Holder(gateway, user)
    lease = holder.grant(100)
    holder.record(lease, hold=30, tokens=10)
    assert budget(database, user) == (10, 70)

    # Its holder dies: the 70 it still held count as used, not a token more.
    wait_for(lambda: charged(database, lease), timeout=30, what="the lease charged")
    assert budget(database, user) == (80, 0)
    assert lease_state(database, lease) == (None, 30, True)
    # Nothing left to give back or renew.
    answer = holder.call(give_back=[{"lease": lease, "taken": 0}], renew=[lease])
    assert answer["renewed"] == []
    assert budget(database, user) == (80, 0)

    # A record of a request it decided arrives late: its hold of 20 was charged as used,
    # its 5 tokens are what counts.
    holder.record(lease, hold=20, tokens=5)
    assert budget(database, user) == (65, 0)
    assert lease_state(database, lease) == (None, 50, True)


def test_a_lease_given_back_whose_records_never_come_is_charged_what_was_taken(
    quick: tuple[RunningService, str], clients: tuple[httpx.Client, httpx.Client]
) -> None:
    _, database = quick
    gateway, admin = clients
    user = f"u-{uuid.uuid4().hex[:8]}"
    assert admin.put(f"/contracts/user/{user}", json={"token_budget": 1000}).is_success
    holder = Holder(gateway, user)
    lease = holder.grant(100)
    holder.record(lease, hold=10, tokens=4)
    holder.call(give_back=[{"lease": lease, "taken": 40}])
    assert budget(database, user) == (4, 30)  # 30 taken, not settled yet

    wait_for(lambda: charged(database, lease), timeout=30, what="the given-back lease charged")
    assert budget(database, user) == (34, 0)
    assert lease_state(database, lease) == (40, 10, True)
    holder.record(lease, hold=30, tokens=12)
    assert budget(database, user) == (16, 0)


def test_renewing_keeps_a_lease(
    quick: tuple[RunningService, str], clients: tuple[httpx.Client, httpx.Client]
) -> None:
    _, database = quick
    gateway, admin = clients
    user = f"u-{uuid.uuid4().hex[:8]}"
    assert admin.put(f"/contracts/user/{user}", json={"token_budget": 1000}).is_success
    holder = Holder(gateway, user)
    lease = holder.grant(100)
    assert holder.call()["ttl"] == 2.0  # CONTRACT_LEASE_SECONDS
    stranger = Holder(gateway, user, name="gateway-1-pid2")
    assert stranger.call(renew=[lease])["renewed"] == []  # not its lease

    until = time.monotonic() + 6  # three lifetimes, renewed every 0.3 s
    while time.monotonic() < until:
        assert holder.call(renew=[lease])["renewed"] == [lease]
        time.sleep(0.3)
    assert lease_state(database, lease) == (None, 0, False)
    assert budget(database, user) == (0, 100)
    wait_for(lambda: charged(database, lease), timeout=30, what="the lease charged")
    assert budget(database, user) == (100, 0)


def test_charged_leases_are_deleted_after_the_receipt_days(
    quick: tuple[RunningService, str], clients: tuple[httpx.Client, httpx.Client]
) -> None:
    _, database = quick
    gateway, admin = clients
    user = f"u-{uuid.uuid4().hex[:8]}"
    assert admin.put(f"/contracts/user/{user}", json={"token_budget": 1000}).is_success
    lease = Holder(gateway, user).grant(10)
    wait_for(lambda: charged(database, lease), timeout=30, what="the lease charged")
    with psycopg.connect(database, autocommit=True) as conn:
        kept = conn.execute(
            "SELECT expires_at - charged_at > interval '6 days' FROM leases WHERE id = %s",
            [lease],
        ).fetchone()
        assert kept == (True,)
        conn.execute(
            "UPDATE leases SET expires_at = now() - interval '1 second' WHERE id = %s", [lease]
        )
    wait_for(
        lambda: lease_state(database, lease) is None,
        timeout=30,
        what="the old charged lease to be deleted",
    )
    assert budget(database, user) == (10, 0)  # deleted, not charged again
