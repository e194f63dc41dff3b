"""POST /leases on the real service and real PostgreSQL: slices of limited counters granted
to gateway processes never add up to more than the limit, even with many calls at once to
two replicas; what is given back can be granted again; usage records with `counters`
settle leases; admins get nothing; wrong wants and callers are refused."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import early_in_a_minute
from modelserve.testbed.testing_clients import token_clients


def put_contract(admin: httpx.Client, kind: str, name: str, **limits: Any) -> None:
    response = admin.put(f"/contracts/{kind}/{name}", json=limits)
    assert response.status_code == 200, response.text


def leases(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/leases", json={"holder": "gateway-test-1", **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def want(scope: str, metric: str, amount: int) -> dict[str, Any]:
    return {"scope": scope, "metric": metric, "amount": amount}


def counter(database: str, scope: str, metric: str) -> tuple[int, int]:
    """(used, reserved) of the counter in its current window (0, 0 without a row)."""
    unit = metric.partition("/")[2]
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT used, reserved FROM counters WHERE scope = %s AND metric = %s"
            " AND window_start = contract_window(%s)",
            [scope, metric, unit],
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def lease_row(database: str, lease: str) -> dict[str, Any] | None:
    with psycopg.connect(database, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT granted, taken, settled, charged_at IS NOT NULL AS charged"
            " FROM leases WHERE id = %s",
            [lease],
        )
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip(("granted", "taken", "settled", "charged"), row, strict=True))


def test_parallel_wants_on_two_replicas_grant_exactly_the_limit(
    contract_replicas: list[RunningService],
    signer: TokenSigner,
    admin: httpx.Client,
    contract_database: str,
    user: str,
) -> None:
    """64 gateway processes want 1 to 5 requests of a limit of 50 at once, through two
    replicas: exactly 50 are granted in total; then nothing is left."""
    put_contract(admin, "user", user, requests_per_minute=50)
    early_in_a_minute()
    token = signer.sign("service:gateway", roles=("service",))
    amounts = [random.randint(1, 5) for _ in range(64)]
    assert sum(amounts) > 50

    async def run() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(
            timeout=60,
            limits=httpx.Limits(max_connections=100),
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{contract_replicas[i % 2].url}/leases",
                        json={
                            "holder": f"gateway-{i}",
                            "principal": {"subject": user},
                            "want": [want(f"user:{user}", "requests/minute", amount)],
                        },
                    )
                    for i, amount in enumerate(amounts)
                )
            )
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses][:3]
        return [r.json() for r in responses]

    answers = asyncio.run(run())
    grants = [answer["leases"][0] for answer in answers]
    assert sum(g["granted"] for g in grants) == 50
    assert all(g["granted"] <= amount for g, amount in zip(grants, amounts, strict=True))
    assert all((g["lease"] is None) == (g["granted"] == 0) for g in grants)
    assert {g["limit"] for g in grants} == {50}
    assert counter(contract_database, f"user:{user}", "requests/minute") == (0, 50)
    with token_clients(signer) as make:
        gateway = make(contract_replicas[1].url, "service:gateway", roles=("service",))
        later = leases(
            gateway,
            principal={"subject": user},
            want=[want(f"user:{user}", "requests/minute", 1)],
        )
    assert later["leases"][0]["granted"] == 0 and later["leases"][0]["lease"] is None


def test_the_answer_names_the_principal_its_limits_and_the_window(
    gateway: httpx.Client, admin: httpx.Client, user: str
) -> None:
    team = f"team-{uuid.uuid4().hex[:6]}"
    put_contract(admin, "user", user, token_budget=1000, budget_period="day")
    put_contract(admin, "team", team, requests_per_minute=7)
    answer = leases(
        gateway,
        principal={"subject": user, "teams": [team, "other"]},
        want=[
            want(f"team:{team}", "requests/minute", 3),
            want(f"user:{user}", "tokens/day", 400),
        ],
    )
    assert answer["ttl"] == 30.0
    assert answer["renewed"] == []
    about = answer["principal"]
    assert (about["admin"], about["team"]) == (False, team)
    assert [(s["key"], s["label"]) for s in about["scopes"]] == [
        (f"user:{user}", f"user {user}"),
        (f"team:{team}", f"team {team}"),
    ]
    assert about["scopes"][0]["limits"]["token_budget"] == 1000
    assert about["scopes"][0]["limits"]["max_replicas"] == 5  # a default, merged in
    assert about["scopes"][1]["limits"]["requests_per_minute"] == 7
    assert about["scopes"][1]["limits"]["max_replicas"] is None  # a team's own contract
    first, second = answer["leases"]
    assert (first["scope"], first["metric"], first["granted"], first["limit"]) == (
        f"team:{team}",
        "requests/minute",
        3,
        7,
    )
    assert 0 < first["window_ends_in"] <= 60
    assert (second["granted"], second["limit"]) == (400, 1000)
    assert 60 < second["window_ends_in"] <= 86400
    # Without a principal: no principal part at all.
    bare = leases(gateway)
    assert bare == {"ttl": 30.0, "leases": [], "renewed": []}


def test_limits_are_read_from_the_database_not_the_replicas_memory(
    gateway: httpx.Client, contract_database: str, user: str
) -> None:
    """A contract written straight into PostgreSQL, with no notification: the replica's
    in-memory book never hears of it, the lease sees it at once."""
    with psycopg.connect(contract_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO contracts (kind, name, requests_per_minute) VALUES ('user', %s, 4)",
            [user],
        )
    early_in_a_minute()
    answer = leases(
        gateway,
        principal={"subject": user},
        want=[want(f"user:{user}", "requests/minute", 10)],
    )
    assert answer["principal"]["scopes"][0]["limits"]["requests_per_minute"] == 4
    assert answer["leases"][0]["granted"] == 4


def test_what_is_given_back_is_granted_again(
    gateway: httpx.Client, admin: httpx.Client, contract_database: str, user: str
) -> None:
    put_contract(admin, "user", user, requests_per_minute=10)
    early_in_a_minute()
    principal = {"subject": user}
    rate = f"user:{user}"
    first = leases(gateway, principal=principal, want=[want(rate, "requests/minute", 10)])
    lease = first["leases"][0]["lease"]
    assert first["leases"][0]["granted"] == 10
    none_left = leases(gateway, holder="gateway-b", principal=principal,
                       want=[want(rate, "requests/minute", 5)])  # fmt: skip
    assert none_left["leases"][0]["granted"] == 0

    # Another holder cannot give it back; its holder gives back the 7 it did not take.
    leases(gateway, holder="gateway-b", give_back=[{"lease": lease, "taken": 0}])
    assert counter(contract_database, rate, "requests/minute") == (0, 10)
    leases(gateway, give_back=[{"lease": lease, "taken": 3}])
    assert counter(contract_database, rate, "requests/minute") == (0, 3)
    assert lease_row(contract_database, lease) == {
        "granted": 10,
        "taken": 3,
        "settled": 0,
        "charged": False,
    }
    again = leases(gateway, holder="gateway-b", principal=principal,
                   want=[want(rate, "requests/minute", 10)])  # fmt: skip
    assert again["leases"][0]["granted"] == 7
    # A second give-back of the same lease changes nothing, and renew skips it.
    answer = leases(gateway, give_back=[{"lease": lease, "taken": 0}], renew=[lease])
    assert answer["renewed"] == []
    assert counter(contract_database, rate, "requests/minute") == (0, 10)

    # The records of the 3 taken settle it; the last one deletes it.
    for _ in range(3):
        record = {
            "id": str(uuid.uuid4()),
            "principal": principal,
            "model": "m",
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "counters": [{"scope": rate, "metric": "requests/minute", "lease": lease, "hold": 1}],
        }
        assert gateway.post("/usage", json=record).json() == {
            "recorded": True,
            "reservation_found": False,
        }
    assert counter(contract_database, rate, "requests/minute") == (3, 7)
    assert lease_row(contract_database, lease) is None


def test_give_back_clamps_taken_and_deletes_a_settled_lease(
    gateway: httpx.Client, admin: httpx.Client, contract_database: str, user: str
) -> None:
    put_contract(admin, "user", user, token_budget=100)
    principal = {"subject": user}
    budget = f"user:{user}"
    answer = leases(gateway, principal=principal, want=[want(budget, "tokens/month", 60)])
    lease = answer["leases"][0]["lease"]
    record = {
        "principal": principal,
        "model": "m",
        "prompt_tokens": 5,
        "completion_tokens": 5,
        "counters": [{"scope": budget, "metric": "tokens/month", "lease": lease, "hold": 20}],
    }
    assert gateway.post("/usage", json=record).status_code == 200
    assert counter(contract_database, budget, "tokens/month") == (10, 40)
    # Taken beyond what was granted is the whole grant; all of it settled? Not yet: 20 of 60.
    leases(gateway, give_back=[{"lease": lease, "taken": 10_000}])
    assert counter(contract_database, budget, "tokens/month") == (10, 40)
    assert lease_row(contract_database, lease) == {
        "granted": 60,
        "taken": 60,
        "settled": 20,
        "charged": False,
    }

    # A lease given back with less taken than already settled: nothing left, deleted.
    second = leases(gateway, principal=principal, want=[want(budget, "tokens/month", 50)])
    assert second["leases"][0]["granted"] == 50
    other = second["leases"][0]["lease"]
    record["counters"] = [{"scope": budget, "metric": "tokens/month", "lease": other, "hold": 30}]
    assert gateway.post("/usage", json=record).status_code == 200
    assert counter(contract_database, budget, "tokens/month") == (20, 60)
    leases(gateway, give_back=[{"lease": other, "taken": -5}])
    assert lease_row(contract_database, other) is None
    assert counter(contract_database, budget, "tokens/month") == (20, 40)


def test_records_with_counters_settle_leases_once(
    gateway: httpx.Client, admin: httpx.Client, contract_database: str, user: str
) -> None:
    """used += actual, reserved -= hold in the lease's window; an unleased counter (the
    team's budget window without a budget) counts the tokens; a duplicate id changes
    nothing at all."""
    team = f"team-{uuid.uuid4().hex[:6]}"
    put_contract(admin, "user", user, requests_per_minute=100, token_budget=10_000)
    put_contract(admin, "team", team, requests_per_minute=100)
    early_in_a_minute()
    principal = {"subject": user, "teams": [team]}
    me, us = f"user:{user}", f"team:{team}"
    answer = leases(
        gateway,
        principal=principal,
        want=[
            want(me, "requests/minute", 10),
            want(me, "tokens/month", 2000),
            want(us, "requests/minute", 10),
        ],
    )
    rate, budget, team_rate = (grant["lease"] for grant in answer["leases"])
    record = {
        "id": str(uuid.uuid4()),
        "principal": principal,
        "team": team,
        "model": "m",
        "prompt_tokens": 30,
        "completion_tokens": 20,
        "counters": [
            {"scope": me, "metric": "requests/minute", "lease": rate, "hold": 1},
            {"scope": me, "metric": "tokens/month", "lease": budget, "hold": 512},
            {"scope": us, "metric": "requests/minute", "lease": team_rate, "hold": 1},
            {"scope": us, "metric": "tokens/month", "lease": None, "hold": 0},
        ],
    }
    assert gateway.post("/usage", json=record).json() == {
        "recorded": True,
        "reservation_found": False,
    }
    expected = {
        (me, "requests/minute"): (1, 9),
        (me, "tokens/month"): (50, 2000 - 512),
        (us, "requests/minute"): (1, 9),
        (us, "tokens/month"): (50, 0),
    }
    for (scope, metric), values in expected.items():
        assert counter(contract_database, scope, metric) == values, (scope, metric)
    assert lease_row(contract_database, budget) == {
        "granted": 2000,
        "taken": None,
        "settled": 512,
        "charged": False,
    }
    usage = admin.get("/usage", params={"user": user, "period": "day"}).json()
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (1, 30, 20)

    again = gateway.post("/usage", json=record).json()
    assert again == {"recorded": True, "reservation_found": False, "duplicate": True}
    for (scope, metric), values in expected.items():
        assert counter(contract_database, scope, metric) == values, (scope, metric)
    assert lease_row(contract_database, budget)["settled"] == 512  # type: ignore[index]
    usage = admin.get("/usage", params={"user": user, "period": "day"}).json()
    assert usage["requests"] == 1

    # A lease that does not exist (or is of another counter): counted, without limit.
    record = {**record, "id": str(uuid.uuid4())}
    record["counters"] = [
        {"scope": me, "metric": "tokens/month", "lease": str(uuid.uuid4()), "hold": 512},
        {"scope": me, "metric": "requests/minute", "lease": budget, "hold": 1},
    ]
    assert gateway.post("/usage", json=record).status_code == 200
    assert counter(contract_database, me, "tokens/month") == (100, 2000 - 512)
    assert counter(contract_database, me, "requests/minute") == (2, 9)


def test_admins_are_answered_but_granted_nothing(
    gateway: httpx.Client, admin: httpx.Client, contract_database: str, user: str
) -> None:
    put_contract(admin, "user", user, requests_per_minute=10)
    answer = leases(
        gateway,
        principal={"subject": user, "roles": ["admin"]},
        want=[want(f"user:{user}", "requests/minute", 5)],
    )
    assert answer["principal"]["admin"] is True
    assert answer["principal"]["scopes"][0]["limits"]["requests_per_minute"] == 10
    grant = answer["leases"][0]
    assert (grant["lease"], grant["granted"], grant["limit"]) == (None, 0, 10)
    assert counter(contract_database, f"user:{user}", "requests/minute")[1] == 0


@pytest.mark.parametrize(
    ("wanted", "why"),
    [
        ("tokens/minute", "no tokens_per_minute: not limited"),
        ("tokens/day", "the budget is per month"),
        ("requests/hour", "no such metric"),
    ],
)
def test_a_want_of_an_unlimited_counter_is_refused(
    gateway: httpx.Client, admin: httpx.Client, user: str, wanted: str, why: str
) -> None:
    put_contract(admin, "user", user, requests_per_minute=10, token_budget=100)
    response = gateway.post(
        "/leases",
        json={
            "holder": "gateway-test-1",
            "principal": {"subject": user},
            "want": [
                want(f"user:{user}", "requests/minute", 1),
                want(f"user:{user}", wanted, 1),
            ],
        },
    )
    assert response.status_code == 422, why
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(f"want[1]: user:{user} {wanted} is not a limited counter")


def test_a_want_of_another_principals_counter_or_without_a_principal_is_refused(
    gateway: httpx.Client, admin: httpx.Client, contract_database: str, user: str
) -> None:
    put_contract(admin, "user", user, requests_per_minute=10)
    put_contract(admin, "user", f"{user}-other", requests_per_minute=10)
    foreign = want(f"user:{user}-other", "requests/minute", 1)
    response = gateway.post(
        "/leases",
        json={"holder": "g", "principal": {"subject": user}, "want": [foreign]},
    )
    assert response.status_code == 422
    assert "want[0]" in response.json()["error"]["message"]
    response = gateway.post("/leases", json={"holder": "g", "want": [foreign]})
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "want needs a principal"
    for amount in (0, 2**63):
        response = gateway.post(
            "/leases",
            json={
                "holder": "g",
                "principal": {"subject": user},
                "want": [want(f"user:{user}", "requests/minute", amount)],
            },
        )
        assert response.status_code == 422
    assert counter(contract_database, f"user:{user}-other", "requests/minute") == (0, 0)


def test_only_services_hold_leases(
    contract: RunningService, signer: TokenSigner, admin: httpx.Client, user: str
) -> None:
    body = {"holder": "g", "principal": {"subject": user}}
    with token_clients(signer) as make:
        for client in (make(contract.url, user), admin):
            response = client.post("/leases", json=body)
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "service_only"
    assert httpx.post(f"{contract.url}/leases", json=body).status_code == 401


def test_values_postgresql_cannot_hold_are_the_clients_mistake(
    gateway: httpx.Client, admin: httpx.Client, user: str
) -> None:
    """A NUL byte in a holder or a principal: 422 invalid_value, never a 500."""
    put_contract(admin, "user", user, requests_per_minute=10)
    for body in (
        {"holder": "g\x00"},
        {"holder": "g", "principal": {"subject": f"{user}\x00"}},
        {"holder": "g\x00", "principal": {"subject": user},
         "want": [want(f"user:{user}", "requests/minute", 1)]},
    ):  # fmt: skip
        response = gateway.post("/leases", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_value"
