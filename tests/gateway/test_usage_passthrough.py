"""The gateway's GET /usage, GET /usage/daily, GET /contracts/me and GET
/contracts/limits: the contract service's answers and refusals passed on as the caller
(the contract service judges whose usage and limits they may read); without a contract
service 404 `contract_not_configured`, one out of reach 503 `contract_unavailable`, never
a 500."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.platform import RunningService
from modelserve.testbed.processes import free_port

pytestmark = pytest.mark.postgres

PATHS = ["/usage", "/usage/daily", "/contracts/me", "/contracts/limits"]
Client = Callable[..., httpx.Client]


def record(contract: RunningService, signer: TokenSigner, user: str, team: str | None) -> None:
    """One request's usage, as the gateway's usage outbox sends it."""
    body = {
        "principal": {"subject": user, "teams": [team] if team else []},
        "team": team,
        "model": "smollm2",
        "prompt_tokens": 12,
        "completion_tokens": 4,
    }
    token = signer.service_token("gateway")
    answer = httpx.post(
        f"{contract.url}/usage",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_usage_and_limits_as_the_caller(
    start_gateway: Callable[..., RunningService],
    module_contract: RunningService,
    signer: TokenSigner,
    as_user: Client,
) -> None:
    gateway = start_gateway(GATEWAY_CONTRACT_URL=module_contract.url)
    alice, team = f"alice-{uuid.uuid4().hex[:6]}", f"team-{uuid.uuid4().hex[:6]}"
    record(module_contract, signer, alice, team)
    record(module_contract, signer, alice, None)
    me = as_user(gateway, alice, teams=(team,))
    direct = as_user(module_contract, alice, teams=(team,))

    day = ok(me.get("/usage", params={"period": "day"}))
    assert (day["user"], day["requests"], day["prompt_tokens"]) == (alice, 2, 24)
    assert day["models"] == [
        {"model": "smollm2", "requests": 2, "prompt_tokens": 24, "completion_tokens": 8}
    ]
    # The contract service's answers, as they are.
    assert day == ok(direct.get("/usage", params={"period": "day"}))
    assert ok(me.get("/usage"))["period"] == "month"

    daily = ok(me.get("/usage/daily", params={"days": 3}))
    assert len(daily["series"]) == 3 and daily["series"][-1]["requests"] == 2
    assert daily == ok(direct.get("/usage/daily", params={"days": 3}))
    assert len(ok(me.get("/usage/daily"))["series"]) == 30

    team_daily = ok(me.get("/usage/daily", params={"team": team, "days": 2}))
    assert (team_daily["team"], team_daily["requests"]) == (team, 1)

    mine = ok(me.get("/contracts/me"))
    assert (mine["user"], mine["team"]) == (alice, team)
    assert mine == ok(direct.get("/contracts/me"))

    mine_now = ok(me.get("/contracts/limits"))
    assert mine_now == {"user": alice, "team": None, "limits": mine["limits"]}
    assert ok(me.get("/contracts/limits", params={"team": team}))["limits"] is None

    admin = as_user(gateway, "root", roles=("admin",))
    assert ok(admin.get("/usage/daily", params={"user": alice, "days": 1}))["requests"] == 2
    assert ok(admin.get("/contracts/limits", params={"user": alice}))["user"] == alice
    refused = me.get("/contracts/limits", params={"user": "bob"})
    assert refused.status_code == 403, refused.text

    # Refusals: the contract service's, status, code and message kept.
    other = me.get("/usage/daily", params={"user": "bob"})
    assert other.status_code == 403, other.text
    refused = direct.get("/usage/daily", params={"user": "bob"})
    assert other.json()["error"] == refused.json()["error"]
    not_mine = me.get("/usage", params={"team": "not-mine"})
    assert not_mine.status_code == 403, not_mine.text
    assert "not a member of team not-mine" in not_mine.json()["error"]["message"]
    both = me.get("/usage/daily", params={"user": alice, "team": team})
    assert both.status_code == 400, both.text
    assert both.json()["error"]["code"] == "bad_request"
    for days in (0, 91, "many"):
        wrong = me.get("/usage/daily", params={"days": days})
        assert wrong.status_code == 422, wrong.text
        assert wrong.json()["error"]["code"] == "invalid_request"
    with httpx.Client(base_url=gateway.url, timeout=30) as anonymous:
        for path in PATHS:
            assert anonymous.get(path).status_code == 401, path


def test_without_a_contract_service_the_routes_say_so(
    start_gateway: Callable[..., RunningService], as_user: Client
) -> None:
    gateway = start_gateway()
    me = as_user(gateway, "alice")
    for path in PATHS:
        answer = me.get(path)
        assert answer.status_code == 404, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "contract_not_configured"
        assert "no contract service" in error["message"]


def test_a_contract_service_out_of_reach_is_503(
    start_gateway: Callable[..., RunningService], as_user: Client
) -> None:
    gateway = start_gateway(GATEWAY_CONTRACT_URL=f"http://127.0.0.1:{free_port()}")
    me = as_user(gateway, "alice")
    for path in PATHS:
        answer = me.get(path)
        assert answer.status_code == 503, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "contract_unavailable"
        assert "cannot be reached" in error["message"]
