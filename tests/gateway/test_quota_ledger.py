"""The gateway's quota ledger (modelserve.gateway.quota) in this process, against a real
contract service and PostgreSQL: what it decides matches the contract's rules and words,
requests that fit their slices cost no call, limits are exact under concurrency within a
process and across two, what is not taken goes back, a contract change reaches decisions
within the refresh interval, and an unreachable contract fails closed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest

from modelserve.common.tokens import Claims, TokenSigner
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.quota.client import ContractUnavailable, LeaseClient, ServiceToken
from modelserve.gateway.quota.ledger import Decision, QuotaLedger
from modelserve.gateway.upstream import UpstreamClient
from modelserve.testbed.contract_limits import put_contract
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import early_in_a_minute, wait_for
from modelserve.testbed.processes import free_port

pytestmark = pytest.mark.postgres

Ledgers = Callable[..., Any]


def claims(subject: str, *, teams: tuple[str, ...] = (), roles: tuple[str, ...] = ()) -> Claims:
    now = int(time.time())
    return Claims(
        sub=subject,
        roles=list(roles),
        teams=list(teams),
        iss="modelserve",
        aud="modelserve",
        exp=now + 3600,
        iat=now,
        jti=uuid.uuid4().hex,
    )


@asynccontextmanager
async def ledger_of(
    url: str, signer: TokenSigner, *, refresh: float = 5.0, metrics: GatewayMetrics | None = None
) -> AsyncIterator[QuotaLedger]:
    http = UpstreamClient(connections=64, connect_timeout=2, read_timeout=2)
    client = LeaseClient(url, http, ServiceToken(signer, 3600), f"test-{uuid.uuid4().hex[:8]}")
    ledger = QuotaLedger(
        client, metrics or GatewayMetrics(), refresh_seconds=refresh, default_tokens=512
    )
    ledger.start()
    try:
        yield ledger
    finally:
        await ledger.close()
        await http.close()


def run(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(work())


@pytest.fixture
def contract(
    contract_with_database: Callable[..., tuple[RunningService, str]],
) -> tuple[RunningService, str]:
    return contract_with_database(CONTRACT_LEASE_SECONDS="3")


def contract_decides(
    contract: RunningService, signer: TokenSigner, subject: str, resource: dict[str, Any]
) -> dict[str, Any]:
    """The contract service's own POST /decide (a dry run) for the same request."""
    answer = httpx.post(
        f"{contract.url}/decide",
        json={
            "principal": {"subject": subject, "teams": [], "roles": []},
            "action": "infer",
            "resource": resource,
            "dry_run": True,
        },
        headers={"Authorization": f"Bearer {signer.sign('service:gateway', roles=['service'])}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def counter(database: str, scope: str, metric: str) -> tuple[int, int]:
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT used, reserved FROM counters WHERE scope = %s AND metric = %s"
            " ORDER BY window_start DESC LIMIT 1",
            [scope, metric],
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def sample(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(f"modelserve_gateway_{name}_total", labels) or 0.0


def test_denials_are_the_contracts_own(
    contract: tuple[RunningService, str], signer: TokenSigner
) -> None:
    service, _ = contract
    put_contract(service.url, signer, "user", "dee", models=["m-*"], max_budget=2, token_budget=100)
    cases: list[dict[str, Any]] = [
        {"model": "other", "max_tokens": 1},
        {"model": "m-1", "max_tokens": 1, "budget": 3},
        {"model": "m-1", "max_tokens": 101},
        {"model": "m-1", "max_tokens": 2**62},
    ]

    async def work() -> list[Decision]:
        async with ledger_of(service.url, signer) as ledger:
            decided = [
                await ledger.decide(
                    claims("dee"), case["model"], case["max_tokens"], case.get("budget")
                )
                for case in cases
            ]
            # More than the whole budget is denied here: nothing of it was asked for, so
            # no other replica is kept from the rest (nor a 503 for an ask over 2^63).
            assert ("user:dee", "tokens/month") not in ledger.held()
            return decided

    mine = run(work)
    for decision, case in zip(mine, cases, strict=True):
        theirs = contract_decides(service, signer, "dee", case)
        assert not decision.allowed
        assert (decision.reason, decision.message) == (theirs["reason"], theirs["message"])


def test_requests_that_fit_their_slice_cost_no_call(
    contract: tuple[RunningService, str], signer: TokenSigner
) -> None:
    service, database = contract
    put_contract(service.url, signer, "user", "fay", requests_per_minute=10)
    metrics = GatewayMetrics()
    early_in_a_minute()

    async def work() -> list[Decision]:
        async with ledger_of(service.url, signer, metrics=metrics) as ledger:
            return [await ledger.decide(claims("fay"), "m", 4) for _ in range(15)]

    decisions = run(work)
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 5
    assert {d.reason for d in decisions[10:]} == {"request_rate_exceeded"}
    assert decisions[10].message == "user fay reached the limit of 10 requests per minute"
    # Each allowed one holds 1 from a lease of its slice and the unlimited budget window.
    first = decisions[0].holds
    assert [(h.scope, h.metric, h.hold) for h in first] == [
        ("user:fay", "requests/minute", 1),
        ("user:fay", "tokens/month", 0),
    ]
    assert first[0].lease is not None and first[1].lease is None
    local = sample(metrics, "quota_decisions", path="local", outcome="allowed")
    calls = sum(
        sample(metrics, "quota_lease_calls", purpose=purpose, result="ok")
        for purpose in ("principal", "grant", "refill")
    )
    # A small limit is leased a quarter at a time at most: fewer calls than requests.
    assert local >= 1 and calls <= 10, (local, calls)
    # Nothing settled (no usage records here): the ten are reserved, none used; after
    # close gave the slices back, nothing more is.
    assert counter(database, "user:fay", "requests/minute") == (0, 10)


def test_a_steady_stream_is_decided_in_the_process(
    contract: tuple[RunningService, str], signer: TokenSigner
) -> None:
    service, database = contract
    put_contract(
        service.url, signer, "user", "gus", requests_per_minute=100_000, token_budget=10**9
    )
    metrics = GatewayMetrics()
    early_in_a_minute()

    async def work() -> list[Decision]:
        decisions = []
        async with ledger_of(service.url, signer, metrics=metrics) as ledger:
            for _ in range(1000):  # about 400 a second for 2.5 s
                decisions.append(await ledger.decide(claims("gus"), "m", 16))
                await asyncio.sleep(0.0025)
        return decisions

    decisions = run(work)
    assert all(d.allowed for d in decisions)
    local = sample(metrics, "quota_decisions", path="local", outcome="allowed")
    calls = {
        purpose: sample(metrics, "quota_lease_calls", purpose=purpose, result="ok")
        for purpose in ("principal", "refresh", "grant", "refill", "housekeeping")
    }
    print(f"\n1,000 decisions: {local:.0f} local; calls to POST /leases: {calls}")
    # Refills ahead of need keep the slices full: requests wait for the first grant only.
    assert local >= 995 and calls["grant"] <= 2 and sum(calls.values()) <= 25, (local, calls)
    # All taken holds are still reserved (no usage records here), nothing else.
    assert counter(database, "user:gus", "requests/minute") == (0, 1000)
    assert counter(database, "user:gus", "tokens/month") == (0, 16_000)


def test_exactly_the_limit_passes_concurrent_requests_of_two_processes(
    contract: tuple[RunningService, str], signer: TokenSigner
) -> None:
    service, database = contract
    put_contract(service.url, signer, "team", "nlp", requests_per_minute=50)
    early_in_a_minute()

    async def work() -> list[Decision]:
        async with (
            ledger_of(service.url, signer) as one,
            ledger_of(service.url, signer) as two,
        ):
            members = [claims(f"m{i}", teams=("nlp",)) for i in range(4)]
            return await asyncio.gather(
                *((one, two)[i % 2].decide(members[i % 4], "m", 1) for i in range(300))
            )

    decisions = run(work)
    assert sum(d.allowed for d in decisions) == 50
    assert {d.reason for d in decisions if not d.allowed} == {"request_rate_exceeded"}
    assert counter(database, "team:nlp", "requests/minute") == (0, 50)


def test_what_was_not_taken_goes_back(
    contract: tuple[RunningService, str], signer: TokenSigner
) -> None:
    service, database = contract
    put_contract(service.url, signer, "user", "gil", token_budget=10_000, budget_period="day")

    async def work() -> tuple[int, int]:
        async with ledger_of(service.url, signer) as ledger:
            for _ in range(3):
                assert (await ledger.decide(claims("gil"), "m", 100)).allowed
            return counter(database, "user:gil", "tokens/day")

    used, reserved_while_held = run(work)
    assert used == 0 and reserved_while_held >= 300
    # Closed: the three holds stay reserved until their usage records come; the rest of
    # the slice is back.
    assert counter(database, "user:gil", "tokens/day") == (0, 300)


def test_a_contract_change_reaches_decisions_within_the_refresh_interval(
    contract: tuple[RunningService, str], signer: TokenSigner
) -> None:
    service, database = contract
    put_contract(service.url, signer, "user", "hal", models=["a"], token_budget=1000)

    async def work() -> None:
        async with ledger_of(service.url, signer, refresh=0.5) as ledger:
            assert (await ledger.decide(claims("hal"), "a", 100)).allowed
            assert not (await ledger.decide(claims("hal"), "b", 100)).allowed
            put_contract(service.url, signer, "user", "hal", models=["b"], token_budget=300)
            await asyncio.sleep(0.6)
            assert not (await ledger.decide(claims("hal"), "a", 100)).allowed
            assert (await ledger.decide(claims("hal"), "b", 100)).allowed
            # The old budget's slice went back: 100 and 100 held, 100 more fit, not 200.
            assert (await ledger.decide(claims("hal"), "b", 100)).allowed
            over = await ledger.decide(claims("hal"), "b", 100)
            assert over.reason == "token_budget_exhausted", over

    run(work)
    assert counter(database, "user:hal", "tokens/month") == (0, 300)


def test_admins_are_not_limited_and_hold_nothing(
    contract: tuple[RunningService, str], signer: TokenSigner
) -> None:
    service, database = contract
    put_contract(service.url, signer, "user", "root", requests_per_minute=0, token_budget=0)

    async def work() -> Decision:
        async with ledger_of(service.url, signer) as ledger:
            return await ledger.decide(claims("root", roles=("admin",)), "m", 100)

    decision = run(work)
    assert (decision.allowed, decision.reason) == (True, "admin")
    assert [(h.metric, h.lease, h.hold) for h in decision.holds] == [("tokens/month", None, 0)]
    assert counter(database, "user:root", "requests/minute") == (0, 0)


def test_an_unreachable_contract_fails_closed(signer: TokenSigner) -> None:
    async def work() -> None:
        async with ledger_of(f"http://127.0.0.1:{free_port()}", signer) as ledger:
            with pytest.raises(ContractUnavailable):
                await ledger.decide(claims("ivy"), "m", 1)

    run(work)


def test_slices_keep_deciding_until_their_leases_run_out_without_the_contract(
    contract: tuple[RunningService, str], signer: TokenSigner
) -> None:
    service, _ = contract
    put_contract(service.url, signer, "user", "jo", requests_per_minute=1000)
    early_in_a_minute(margin=20)

    async def work() -> None:
        async with ledger_of(service.url, signer) as ledger:
            for _ in range(20):  # a take rate: the slice holds more than one request
                assert (await ledger.decide(claims("jo"), "m", 1)).allowed
            service.stop()
            assert (await ledger.decide(claims("jo"), "m", 1)).allowed

            async def refused() -> bool:
                try:
                    await ledger.decide(claims("jo"), "m", 1)
                except ContractUnavailable:
                    return True
                return False

            began = time.monotonic()
            while not await refused():
                assert time.monotonic() - began < 10
                await asyncio.sleep(0.1)

    try:
        run(work)
    finally:
        service.start()
    wait_for(
        lambda: httpx.get(f"{service.url}/health").status_code == 200,
        timeout=30,
        what="the contract service back",
    )
