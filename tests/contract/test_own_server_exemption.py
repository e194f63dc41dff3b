"""`rate_limit_exempt_own_servers`: inference on the caller's own servers (theirs, or
their team's) is not held to the per-minute rates, yet still holds tokens, counts in the
token budget and is recorded as usage; and a list of prompts holds tokens for each. The
contract service as a process on real PostgreSQL, through its REST API."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from modelserve.testbed.polling import early_in_a_minute

Client = Callable[..., httpx.Client]


class Acting:
    """The gateway deciding for a user: a service token, the user in `principal`."""

    def __init__(self, client: Client, subject: str, teams: tuple[str, ...] = ()) -> None:
        self._gateway = client("service:gateway", roles=("service",))
        self._principal = {"subject": subject, "teams": list(teams), "roles": []}

    def post(self, path: str, json: dict[str, Any]) -> httpx.Response:
        return self._gateway.post(path, json={"principal": self._principal, **json})


def infer(**resource: Any) -> dict[str, Any]:
    return {"action": "infer", "resource": {"model": "smollm2", **resource}}


def decide(client: Acting, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/decide", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def put_contract(client: Client, kind: str, name: str, **limits: Any) -> None:
    response = client("root", roles=("admin",)).put(f"/contracts/{kind}/{name}", json=limits)
    assert response.status_code == 200, response.text


def _usage(client: Client, user: str, reservation: str, prompt: int, completion: int) -> None:
    gateway = client("service:gateway", roles=("service",))
    recorded = gateway.post(
        "/usage",
        json={
            "principal": {"subject": user},
            "model": "smollm2",
            "reservation": reservation,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
        },
    )
    assert recorded.json() == {"recorded": True, "reservation_found": True}, recorded.text


def test_own_servers_are_exempt_from_rates_but_counted(client: Client, user: str) -> None:
    team = f"t-{uuid.uuid4().hex[:8]}"
    put_contract(
        client,
        "user",
        user,
        requests_per_minute=2,
        tokens_per_minute=100,
        token_budget=10_000,
        rate_limit_exempt_own_servers=True,
    )
    me = Acting(client, user, teams=(team,))
    mine: dict[str, Any] = {"server_owner": user}
    teams: dict[str, Any] = {"server_owner": "someone-else", "server_team": team}
    others: dict[str, Any] = {"server_owner": "someone-else", "server_team": "other-team"}
    early_in_a_minute()
    reservations = []
    # Past both rates (2 requests, 100 tokens a minute) on the user's own and their
    # team's servers.
    for resource in (mine, teams, mine, teams, mine):
        allowed = decide(me, infer(max_tokens=50, **resource))
        assert allowed["allowed"], allowed
        assert "own server" in allowed["message"]
        reservations.append(allowed["reservation"])
    # Someone else's server is held to the rates, which the exempt requests left alone.
    assert decide(me, infer(max_tokens=50, **others))["allowed"]
    assert decide(me, infer(max_tokens=50, **others))["allowed"]
    refused = decide(me, infer(max_tokens=1, **others))
    assert refused["reason"] == "request_rate_exceeded", refused
    # So is a request that names no server.
    assert decide(me, infer(max_tokens=1))["reason"] == "request_rate_exceeded"
    # The exempt requests' usage is recorded and reported.
    for reservation in reservations:
        _usage(client, user, reservation, 7, 3)
    usage = client(user).get("/usage", params={"period": "day"}).json()
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (5, 35, 15)


def test_the_token_budget_still_holds_on_own_servers(client: Client, user: str) -> None:
    put_contract(client, "user", user, token_budget=1000, rate_limit_exempt_own_servers=True)
    me = Acting(client, user)
    assert decide(me, infer(max_tokens=600, server_owner=user))["allowed"]
    over = decide(me, infer(max_tokens=600, server_owner=user))
    assert over["reason"] == "token_budget_exhausted", over


def test_without_the_exemption_own_servers_are_rate_limited(client: Client, user: str) -> None:
    put_contract(client, "user", user, requests_per_minute=1)
    me = Acting(client, user)
    early_in_a_minute()
    assert decide(me, infer(max_tokens=1, server_owner=user))["allowed"]
    refused = decide(me, infer(max_tokens=1, server_owner=user))
    assert refused["reason"] == "request_rate_exceeded", refused


def test_a_team_contract_exempts_its_members_on_the_teams_servers(
    client: Client, user: str
) -> None:
    team = f"t-{uuid.uuid4().hex[:8]}"
    put_contract(client, "team", team, requests_per_minute=1, rate_limit_exempt_own_servers=True)
    me = Acting(client, user, teams=(team,))
    early_in_a_minute()
    for _ in range(3):
        assert decide(me, infer(max_tokens=1, server_team=team))["allowed"]
    assert decide(me, infer(max_tokens=1, server_team="other"))["allowed"]
    refused = decide(me, infer(max_tokens=1, server_team="other"))
    assert refused["reason"] == "request_rate_exceeded", refused
    assert refused["message"] == f"team {team} reached the limit of 1 requests per minute"


def test_a_list_of_prompts_holds_tokens_for_each(client: Client, user: str) -> None:
    put_contract(client, "user", user, token_budget=1000)
    me = Acting(client, user)
    # 8 prompts of 100 tokens each: 800 held, then 300 more is over the budget.
    assert decide(me, infer(max_tokens=100, prompts=8))["allowed"]
    over = decide(me, infer(max_tokens=100, prompts=3))
    assert over["reason"] == "token_budget_exhausted", over
    assert "300 more tokens" in over["message"]


def test_the_fields_are_validated(client: Client, user: str) -> None:
    admin = client("root", roles=("admin",))
    bad = admin.put(f"/contracts/user/{user}", json={"rate_limit_exempt_own_servers": "maybe"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_request"
    assert (
        admin.put(
            f"/contracts/user/{user}", json={"rate_limit_exempt_own_servers": True}
        ).status_code
        == 200
    )
    assert admin.get(f"/contracts/user/{user}").json()["rate_limit_exempt_own_servers"] is True
    gateway = client("service:gateway", roles=("service",))
    for prompts in (0, -1, "many"):
        answer = gateway.post(
            "/decide",
            json={"principal": {"subject": user}, **infer(max_tokens=1, prompts=prompts)},
        )
        assert answer.status_code == 422, (prompts, answer.text)
