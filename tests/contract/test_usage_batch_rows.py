"""What POST /usage/batch leaves in the database, row by row, for one batch that mixes
everything a record can be: counters with and without leases, reservations found and not
found, no team, no id, an id twice in the batch and one counted before, token counts at
the top of PostgreSQL's bigint range, an empty list of counters, a model name beyond
ASCII. The records reach contract_record_usage as one jsonb parameter, unpacked in SQL:
these rows are what it recorded when they came as 13 arrays (tests/contract/
test_usage_batch.py checks the answers and the counting rules one by one)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg

from modelserve.testbed.polling import early_in_a_minute

BIGINT_MAX = 2**63 - 1
FRESH = {"recorded": True, "reservation_found": False}
FOUND = {"recorded": True, "reservation_found": True}
DUPLICATE = {"recorded": True, "reservation_found": False, "duplicate": True}


def counters_of(database: str, scopes: list[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """(used, reserved) of every counter row of `scopes`, by (scope, metric)."""
    with psycopg.connect(database, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT scope, metric, used, reserved FROM counters WHERE scope = ANY (%s)",
            [scopes],
        ).fetchall()
    found = {(scope, metric): (used, reserved) for scope, metric, used, reserved in rows}
    assert len(found) == len(rows), f"a counter of two windows: {rows}"
    return found


def usage_rows(database: str, subjects: list[str]) -> set[tuple[Any, ...]]:
    """Today's usage rows of `subjects`: (subject, team, model, requests, prompt, completion)."""
    with psycopg.connect(database, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT subject, team, model, requests, prompt_tokens, completion_tokens FROM usage"
            " WHERE subject = ANY (%s) AND day = (now() AT TIME ZONE 'UTC')::date",
            [subjects],
        ).fetchall()
    return set(rows)


def test_a_mixed_batch_leaves_exactly_these_rows(
    gateway: httpx.Client, admin: httpx.Client, contract_database: str, user: str
) -> None:
    team, big = f"t-{uuid.uuid4().hex[:8]}", f"{user}-big"
    me, ours, theirs = f"user:{user}", f"team:{team}", f"user:{big}"
    user_limits = {"requests_per_minute": 100, "token_budget": 10**12, "budget_period": "month"}
    assert admin.put(f"/contracts/user/{user}", json=user_limits).is_success
    assert admin.put(f"/contracts/team/{team}", json={"token_budget": 10**12}).is_success
    early_in_a_minute(margin=30)
    principal = {"subject": user, "teams": [team]}

    # Counted before the batch, through POST /usage: its id comes back in the batch.
    counted_before = str(uuid.uuid4())
    single = {
        "id": counted_before,
        "principal": principal,
        "model": "m",
        "prompt_tokens": 1,
        "completion_tokens": 0,
    }
    assert gateway.post("/usage", json=single).json() == FRESH
    # A decision of 300 tokens, for the user and the team (the principal's one team).
    decided = gateway.post(
        "/decide",
        json={
            "principal": principal,
            "action": "infer",
            "resource": {"model": "m", "max_tokens": 300},
        },
    ).json()
    assert decided["allowed"] and decided["team"] == team, decided
    reservation = decided["reservation"]
    # Leases of the user's rate (10 requests) and budget (1,000 tokens).
    answer = gateway.post(
        "/leases",
        json={
            "holder": "gateway-rows",
            "principal": principal,
            "want": [
                {"scope": me, "metric": "requests/minute", "amount": 10},
                {"scope": me, "metric": "tokens/month", "amount": 1000},
            ],
        },
    ).json()
    rate_lease, budget_lease = (g["lease"] for g in answer["leases"])
    assert [g["granted"] for g in answer["leases"]] == [10, 1000], answer

    leased = {
        "id": str(uuid.uuid4()),
        "principal": principal,
        "team": team,
        "model": "m",
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "counters": [
            {"scope": me, "metric": "requests/minute", "lease": rate_lease, "hold": 1},
            {"scope": me, "metric": "tokens/month", "lease": budget_lease, "hold": 64},
            {"scope": ours, "metric": "tokens/month", "lease": None, "hold": 0},
        ],
    }
    settles = {
        "id": str(uuid.uuid4()),
        "principal": principal,
        "team": team,
        "model": "m",
        "reservation": reservation,
        "prompt_tokens": 100,
        "completion_tokens": 50,
    }
    gone = {
        **settles,
        "id": str(uuid.uuid4()),
        "model": "m2-ünï",
        "reservation": str(uuid.uuid4()),
        "prompt_tokens": 7,
        "completion_tokens": 3,
    }
    no_id_no_team = {
        "principal": principal,
        "team": None,
        "model": "m",
        "prompt_tokens": 5,
        "completion_tokens": 5,
    }
    huge = {
        "id": str(uuid.uuid4()),
        "principal": {"subject": big},
        "model": "big",
        "prompt_tokens": 2**62,
        "completion_tokens": 2**62 - 1,
        "counters": [{"scope": theirs, "metric": "tokens/day", "lease": None, "hold": BIGINT_MAX}],
    }
    no_counters = {**leased, "id": str(uuid.uuid4()), "prompt_tokens": 2, "completion_tokens": 0}
    no_counters["counters"] = []
    records = [
        {**single, "team": team, "prompt_tokens": 1000},  # counted before: nothing
        leased,
        settles,
        gone,
        no_id_no_team,
        {**leased, "prompt_tokens": 999},  # the id of `leased`, again: nothing
        huge,
        no_counters,
    ]
    response = gateway.post("/usage/batch", json={"records": records})
    assert response.status_code == 200, response.text
    assert response.json()["results"] == [
        DUPLICATE, FRESH, FOUND, FRESH, FRESH, DUPLICATE, FRESH, FRESH,
    ]  # fmt: skip

    assert counters_of(contract_database, [me, ours, theirs]) == {
        # 1 by the decision, 1 settled from the lease (10 leased: 9 still held).
        (me, "requests/minute"): (2, 9),
        # 1 before; 30 from the lease (its hold of 64 freed), 150 for the reservation
        # (its 300 freed), 10 for the one gone, 10 without a team; 1,000 - 64 leased.
        (me, "tokens/month"): (1 + 30 + 150 + 10 + 10, 1000 - 64),
        # 30 unleased, 150 for the reservation (its 300 freed), 10 for the one gone.
        (ours, "tokens/month"): (30 + 150 + 10, 0),
        (theirs, "tokens/day"): (BIGINT_MAX, 0),
    }
    assert usage_rows(contract_database, [user, big]) == {
        (user, "", "m", 2, 1 + 5, 0 + 5),
        (user, team, "m", 3, 10 + 100 + 2, 20 + 50 + 0),
        (user, team, "m2-ünï", 1, 7, 3),
        (big, "", "big", 1, 2**62, 2**62 - 1),
    }
    ids = [counted_before, leased["id"], settles["id"], gone["id"], huge["id"], no_counters["id"]]
    with psycopg.connect(contract_database, autocommit=True) as conn:
        receipts = conn.execute(
            "SELECT id::text FROM usage_receipts WHERE id = ANY (%s::uuid[])",
            [ids],
        ).fetchall()
        assert sorted(r for (r,) in receipts) == sorted(ids)
        settled = conn.execute(
            "SELECT id::text, settled FROM leases WHERE id = ANY (%s::uuid[])",
            [[rate_lease, budget_lease]],
        ).fetchall()
        assert dict(settled) == {rate_lease: 1, budget_lease: 64}
        left = conn.execute("SELECT count(*) FROM reservations WHERE id = %s", [reservation])
        assert left.fetchone() == (0,)


def test_a_name_postgresql_cannot_hold_refuses_the_batch_whole(
    gateway: httpx.Client, admin: httpx.Client, user: str
) -> None:
    """A NUL character in a model name: 422 invalid_value, and nothing counted."""
    records = [
        {"principal": {"subject": user}, "model": model, "prompt_tokens": 1, "completion_tokens": 0}
        for model in ("m", "m\x00")
    ]
    response = gateway.post("/usage/batch", json={"records": records})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_value"
    found = admin.get("/usage", params={"user": user, "period": "day"}).json()
    assert found["requests"] == 0
