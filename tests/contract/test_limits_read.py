"""GET /contracts/limits: the limits that hold for a user (their contract over the
defaults) or a team (its contract, or none), read as usage is: your own, your teams',
anyone's for admins."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

Client = Callable[..., httpx.Client]


def put_contract(client: Client, kind: str, name: str, **limits: Any) -> None:
    response = client("root", roles=("admin",)).put(f"/contracts/{kind}/{name}", json=limits)
    assert response.status_code == 200, response.text


def limits_of(client: httpx.Client, **params: str) -> dict[str, Any]:
    answer = client.get("/contracts/limits", params=params)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_a_user_s_contract_over_the_defaults_and_a_team_s_own(client: Client, user: str) -> None:
    team = f"t-{uuid.uuid4().hex[:8]}"
    defaults = client(user).get("/contracts/defaults").json()
    put_contract(client, "user", user, requests_per_minute=7)
    mine = limits_of(client(user))
    assert (mine["user"], mine["team"]) == (user, None)
    assert mine["limits"]["requests_per_minute"] == 7
    # What the contract leaves out, the defaults set.
    assert mine["limits"]["max_budget"] == defaults["max_budget"]
    assert mine["limits"] == client(user).get("/contracts/me").json()["limits"]

    member = client(user, teams=(team,))
    assert limits_of(member, team=team) == {"user": None, "team": team, "limits": None}
    put_contract(client, "team", team, token_budget=5000, budget_period="day")
    team_limits = limits_of(member, team=team)["limits"]
    assert (team_limits["token_budget"], team_limits["budget_period"]) == (5000, "day")
    assert team_limits["requests_per_minute"] is None  # a team's contract is not merged

    admin = client("root", roles=("admin",))
    assert limits_of(admin, user=user)["limits"]["requests_per_minute"] == 7
    assert limits_of(admin, team=team)["limits"]["token_budget"] == 5000
    assert limits_of(admin, user=f"{user}-none")["limits"] == defaults


def test_someone_else_s_limits_are_refused(client: Client, user: str) -> None:
    me = client(user, teams=("mine",))
    for params, status in (
        ({"user": f"{user}-else"}, 403),
        ({"team": "not-mine"}, 403),
        ({"user": user, "team": "mine"}, 400),
    ):
        answer = me.get("/contracts/limits", params=params)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["message"]
