"""GET /usage/daily: requests and tokens per UTC day, one entry a day (zeros for days
without use), whose as for GET /usage: your own, your teams', anyone's for admins.

Days before today are written straight into the service's `usage` table (the gateway can
only record today's); today's come through POST /usage as the gateway sends them."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from modelserve.testbed.platform import RunningService

pytestmark = pytest.mark.postgres

Client = Callable[..., httpx.Client]


def today(database: str) -> dt.date:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()
    assert row is not None
    day: dt.date = row[0]
    return day


def write_usage(database: str, rows: list[tuple[dt.date, str, str, str, int, int, int]]) -> None:
    """(day, subject, team, model, requests, prompt_tokens, completion_tokens) rows."""
    with psycopg.connect(database) as conn:
        conn.cursor().executemany(
            "INSERT INTO usage (day, subject, team, model, requests, prompt_tokens,"
            " completion_tokens) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def record(client: Client, user: str, team: str | None, prompt: int, completion: int) -> None:
    """One request's usage, recorded as the gateway does (today's day)."""
    gateway = client("service:gateway", roles=("service",))
    body = {
        "principal": {"subject": user, "teams": [team] if team else []},
        "team": team,
        "model": "smollm2",
        "prompt_tokens": prompt,
        "completion_tokens": completion,
    }
    answer = gateway.post("/usage", json=body)
    assert answer.status_code == 200, answer.text


def daily(client: httpx.Client, **params: Any) -> dict[str, Any]:
    answer = client.get("/usage/daily", params=params)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def by_day(report: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {
        d["day"]: (d["requests"], d["prompt_tokens"], d["completion_tokens"])
        for d in report["series"]
    }


@pytest.fixture
def team() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_one_entry_a_day_with_zeros_and_sums(
    contract: RunningService, contract_database: str, client: Client, user: str, team: str
) -> None:
    now = today(contract_database)
    ago = {n: now - dt.timedelta(days=n) for n in (2, 6, 7, 40)}
    write_usage(
        contract_database,
        [
            # Two models and two teams on one day: summed into that day.
            (ago[2], user, "", "smollm2", 3, 30, 60),
            (ago[2], user, team, "qwen", 1, 10, 20),
            (ago[6], user, "", "smollm2", 2, 5, 5),
            (ago[7], user, "", "smollm2", 4, 4, 4),  # outside 7 days, inside 30
            (ago[40], user, "", "smollm2", 9, 9, 9),  # outside 30 days
            (ago[2], f"{user}-other", "", "smollm2", 100, 100, 100),  # someone else
        ],
    )
    record(client, user, None, 7, 8)

    week = daily(client(user), days=7)
    assert (week["user"], week["team"], week["days"]) == (user, None, 7)
    assert week["until"] == now.isoformat()
    assert week["since"] == ago[6].isoformat()
    assert [d["day"] for d in week["series"]] == [
        (now - dt.timedelta(days=n)).isoformat() for n in range(6, -1, -1)
    ]
    days = by_day(week)
    assert days[ago[2].isoformat()] == (4, 40, 80)
    assert days[ago[6].isoformat()] == (2, 5, 5)
    assert days[now.isoformat()] == (1, 7, 8)
    assert days[(now - dt.timedelta(days=1)).isoformat()] == (0, 0, 0)
    assert (week["requests"], week["prompt_tokens"], week["completion_tokens"]) == (7, 52, 93)

    month = daily(client(user))  # 30 days by default
    assert month["days"] == 30 and len(month["series"]) == 30
    assert by_day(month)[ago[7].isoformat()] == (4, 4, 4)
    assert month["requests"] == 11  # not the day 40 days ago

    # Today's entry is what GET /usage counts for the day.
    day = client(user).get("/usage", params={"period": "day"}).json()
    totals = (day["requests"], day["prompt_tokens"], day["completion_tokens"])
    assert totals == days[now.isoformat()]

    single = daily(client(user), days=1)
    assert [d["day"] for d in single["series"]] == [now.isoformat()]


def test_a_team_for_its_members_anyone_for_admins(
    contract: RunningService, contract_database: str, client: Client, user: str, team: str
) -> None:
    now = today(contract_database)
    write_usage(
        contract_database,
        [(now - dt.timedelta(days=1), user, team, "smollm2", 2, 20, 40)],
    )
    record(client, f"{user}-mate", team, 1, 1)

    member = daily(client(user, teams=(team,)), team=team, days=3)
    assert (member["user"], member["team"]) == (None, team)
    assert [d["requests"] for d in member["series"]] == [0, 2, 1]

    admin = client("root", roles=("admin",))
    assert daily(admin, team=team, days=3)["requests"] == 3
    assert daily(admin, user=user, days=3)["requests"] == 2
    assert daily(admin, user=f"{user}-nobody", days=3)["requests"] == 0


def test_refusals_are_clear_json(
    contract: RunningService, client: Client, user: str, team: str
) -> None:
    me = client(user, teams=(team,))
    refused = [
        (me.get("/usage/daily", params={"team": f"{team}-not-mine"}), 403, "forbidden"),
        (me.get("/usage/daily", params={"user": f"{user}-else"}), 403, "forbidden"),
        (me.get("/usage/daily", params={"user": user, "team": team}), 400, "bad_request"),
        (me.get("/usage/daily", params={"days": 0}), 422, "invalid_request"),
        (me.get("/usage/daily", params={"days": 91}), 422, "invalid_request"),
        (me.get("/usage/daily", params={"days": "many"}), 422, "invalid_request"),
        (httpx.get(f"{contract.url}/usage/daily", timeout=30), 401, None),
    ]
    for answer, status, code in refused:
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert error["message"]
        if code is not None:
            assert error["code"] == code
    assert "team" in me.get("/usage/daily", params={"team": "x"}).json()["error"]["message"]
