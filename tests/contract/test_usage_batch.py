"""POST /usage/batch on the real service and real PostgreSQL: up to 1,000 usage records in
one transaction, answered in order; an id counted once, within a batch and across
batches; records of both shapes (reservations of POST /decide, counters of leases) in
one batch; the batch is refused whole when it is empty, too long or has a wrong record."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import early_in_a_minute
from modelserve.testbed.testing_clients import token_clients

FRESH = {"recorded": True, "reservation_found": False}
DUPLICATE = {"recorded": True, "reservation_found": False, "duplicate": True}


def record(user: str, tokens: int = 10, **more: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "principal": {"subject": user},
        "model": "m",
        "prompt_tokens": tokens,
        "completion_tokens": 0,
        **more,
    }


def batch(client: httpx.Client, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post("/usage/batch", json={"records": records})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def usage_of(admin: httpx.Client, user: str) -> tuple[int, int]:
    """(requests, prompt tokens) of the user today."""
    found = admin.get("/usage", params={"user": user, "period": "day"}).json()
    return found["requests"], found["prompt_tokens"]


def counter(database: str, scope: str, metric: str) -> tuple[int, int]:
    unit = metric.partition("/")[2]
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT used, reserved FROM counters WHERE scope = %s AND metric = %s"
            " AND window_start = contract_window(%s)",
            [scope, metric, unit],
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def test_results_come_in_order_and_an_id_counts_once(
    gateway: httpx.Client, admin: httpx.Client, contract_database: str, user: str
) -> None:
    first, second, no_id = record(user, 1), record(user, 2), record(user, 4)
    del no_id["id"]
    again = {**first, "prompt_tokens": 100}  # the same id: not counted, whatever it says
    assert batch(gateway, [first, second, again, no_id]) == [FRESH, FRESH, DUPLICATE, FRESH]
    assert usage_of(admin, user) == (3, 7)
    assert counter(contract_database, f"user:{user}", "tokens/month") == (7, 0)

    third = record(user, 8)
    assert batch(gateway, [second, third, no_id, first]) == [DUPLICATE, FRESH, FRESH, DUPLICATE]
    assert usage_of(admin, user) == (5, 19)
    assert counter(contract_database, f"user:{user}", "tokens/month") == (19, 0)
    # POST /usage sees the batches' ids too.
    assert gateway.post("/usage", json=third).json() == DUPLICATE


def test_both_shapes_of_records_in_one_batch(
    gateway: httpx.Client, admin: httpx.Client, contract_database: str, user: str
) -> None:
    """Reservations of POST /decide settled, unknown ones counted, leases settled, all in
    one batch; one lease settled by several records of it at once."""
    assert admin.put(f"/contracts/user/{user}", json={"requests_per_minute": 100}).is_success
    early_in_a_minute()
    me = f"user:{user}"
    decided = gateway.post(
        "/decide",
        json={
            "principal": {"subject": user},
            "action": "infer",
            "resource": {"model": "m", "max_tokens": 300},
        },
    ).json()
    reservation = decided["reservation"]
    assert counter(contract_database, me, "tokens/month") == (0, 300)
    assert counter(contract_database, me, "requests/minute") == (1, 0)
    answer = gateway.post(
        "/leases",
        json={
            "holder": "gateway-batch",
            "principal": {"subject": user},
            "want": [{"scope": me, "metric": "requests/minute", "amount": 10}],
        },
    ).json()
    lease = answer["leases"][0]["lease"]
    leased = [
        {"scope": me, "metric": "requests/minute", "lease": lease, "hold": 1},
        {"scope": me, "metric": "tokens/month", "lease": None, "hold": 0},
    ]
    records = [
        record(user, 20, reservation=reservation),  # settles the reservation
        record(user, 1, counters=leased),
        record(user, 40, reservation=str(uuid.uuid4())),  # gone: its tokens count anyway
        record(user, 1, counters=leased),
        record(user, 50, reservation=reservation),  # settled just before: counted anyway
        record(user, 1, counters=leased),
        record(user, 8),  # no reservation, no counters
    ]
    results = batch(gateway, records)
    assert [r["reservation_found"] for r in results] == [
        True, False, False, False, False, False, False,
    ]  # fmt: skip
    assert all("duplicate" not in r for r in results)
    assert counter(contract_database, me, "tokens/month") == (20 + 1 + 40 + 1 + 50 + 1 + 8, 0)
    # 1 counted by the decision, 3 settled from the lease (10 granted: 7 still held).
    assert counter(contract_database, me, "requests/minute") == (4, 7)
    assert usage_of(admin, user) == (7, 121)
    with psycopg.connect(contract_database, autocommit=True) as conn:
        row = conn.execute("SELECT settled FROM leases WHERE id = %s", [lease]).fetchone()
        assert row == (3,)
        left = conn.execute("SELECT count(*) FROM reservations WHERE id = %s", [reservation])
        assert left.fetchone() == (0,)


@pytest.mark.parametrize(
    ("records", "why"),
    [
        (0, "empty"),
        (1001, "more than 1,000"),
        (-1, "a record with both a reservation and counters"),
        (-2, "a counter of no known metric"),
    ],
)
def test_a_wrong_batch_is_refused_whole(
    gateway: httpx.Client, admin: httpx.Client, user: str, records: int, why: str
) -> None:
    body = [record(user) for _ in range(records if records >= 0 else 2)]
    counters = [{"scope": f"user:{user}", "metric": "tokens/month"}]
    if records == -1:
        body[1].update(reservation=str(uuid.uuid4()), counters=counters)
    if records == -2:
        body[1].update(counters=[{"scope": f"user:{user}", "metric": "tokens/hour"}])
    response = gateway.post("/usage/batch", json={"records": body})
    assert response.status_code == 422, why
    assert response.json()["error"]["code"] == "invalid_request"
    assert usage_of(admin, user) == (0, 0)


def test_only_services_and_admins_record_batches(
    contract: RunningService, signer: TokenSigner, admin: httpx.Client, user: str
) -> None:
    with token_clients(signer) as make:
        response = make(contract.url, user).post("/usage/batch", json={"records": [record(user)]})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "service_only"
    assert batch(admin, [record(user)]) == [FRESH]


def test_batches_of_200_leased_records_settle_every_counter(
    gateway: httpx.Client, admin: httpx.Client, contract_database: str, user: str
) -> None:
    """Five batches of 200 leased records of 4 counters each (rates and budget of the user
    and a team), as the gateway's outbox sends them: every lease settled by each record
    once. (What a batch costs is measured by bench/contract_decisions.py, not here.)"""
    team = f"team-{uuid.uuid4().hex[:6]}"
    limits = {"requests_per_minute": 10_000, "token_budget": 10**9}
    assert admin.put(f"/contracts/user/{user}", json=limits).is_success
    assert admin.put(f"/contracts/team/{team}", json=limits).is_success
    early_in_a_minute(margin=30)
    principal = {"subject": user, "teams": [team]}
    scopes = (f"user:{user}", f"team:{team}")
    metrics = ("requests/minute", "tokens/month")
    answer = gateway.post(
        "/leases",
        json={
            "holder": "gateway-timing",
            "principal": principal,
            "want": [
                {"scope": s, "metric": m, "amount": 5000 if m.startswith("requests") else 10**7}
                for s in scopes
                for m in metrics
            ],
        },
    ).json()
    leases = {(g["scope"], g["metric"]): g["lease"] for g in answer["leases"]}

    def hold(metric: str) -> int:
        return 1 if metric.startswith("requests") else 64

    for _ in range(5):
        records = [
            {
                **record(user, 30, team=team, principal=principal),
                "counters": [
                    {"scope": s, "metric": m, "lease": leases[s, m], "hold": hold(m)}
                    for s in scopes
                    for m in metrics
                ],
            }
            for _ in range(200)
        ]
        assert batch(gateway, records) == [FRESH] * 200
    assert counter(contract_database, scopes[0], "requests/minute") == (1000, 5000 - 1000)
    assert counter(contract_database, scopes[1], "tokens/month") == (30_000, 10**7 - 64_000)
