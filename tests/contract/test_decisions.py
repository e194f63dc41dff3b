"""The contract service's REST API, as a process on real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import early_in_a_minute

Client = Callable[..., httpx.Client]


def serve(name: str, namespace: str = "default", **resource: Any) -> dict[str, Any]:
    body = {"namespace": namespace, "name": name, "model": "smollm2", "runtime": "llamacpp"}
    return {"action": "serve", "resource": {**body, **resource}}


def infer(**resource: Any) -> dict[str, Any]:
    return {"action": "infer", "resource": {"model": "smollm2", **resource}}


def decide(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/decide", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def put_contract(client: Client, kind: str, name: str, **limits: Any) -> None:
    response = client("root", roles=("admin",)).put(f"/contracts/{kind}/{name}", json=limits)
    assert response.status_code == 200, response.text


def test_requests_without_a_valid_token_are_refused(
    contract: RunningService, signer: TokenSigner
) -> None:
    missing = httpx.post(f"{contract.url}/decide", json=infer())
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "token_missing"
    forged = httpx.post(
        f"{contract.url}/decide",
        json=infer(),
        headers={"Authorization": "Bearer " + signer.sign("x")[:-4] + "AAAA"},
    )
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "token_invalid"


def test_the_global_defaults_hold_for_users_without_a_contract(client: Client, user: str) -> None:
    # The seeds' defaults: MAX_REPLICAS=5, ALLOWED_NAMESPACES=default,inference.
    me = client(user)
    assert decide(me, serve("a", replicas=5))["allowed"]
    over = decide(me, serve("b", replicas=6))
    assert over == {
        "allowed": False,
        "reason": "max_replicas_exceeded",
        "message": f"6 replicas is over the limit of 5 per server for user {user}",
        "limit": 5,
    }
    elsewhere = decide(me, serve("c", namespace="kube-system"))
    assert elsewhere["reason"] == "namespace_not_allowed"
    assert elsewhere["limit"] == ["default", "inference"]


def test_a_users_contract_replaces_the_defaults_it_sets(client: Client, user: str) -> None:
    put_contract(client, "user", user, namespaces=["research"], models=["smollm2*"], max_replicas=2)
    me = client(user)
    assert decide(me, serve("a", namespace="research", replicas=2))["allowed"]
    assert decide(me, serve("b", namespace="default"))["reason"] == "namespace_not_allowed"
    assert decide(me, serve("c", namespace="research", model="llama"))["reason"] == (
        "model_not_allowed"
    )
    mine = me.get("/contracts/me").json()
    assert mine["limits"]["namespaces"] == ["research"]
    assert mine["limits"]["max_replicas"] == 2


def test_servers_and_gpus_are_counted_across_decisions(client: Client, user: str) -> None:
    put_contract(client, "user", user, max_servers=2, max_gpus=3)
    me = client(user)
    assert decide(me, serve("a", gpus=1, replicas=2))["allowed"]
    # The same server decided again (an update) does not count twice.
    assert decide(me, serve("a", gpus=1, replicas=2))["allowed"]
    gpus = decide(me, serve("b", gpus=2))
    assert gpus["reason"] == "max_gpus_exceeded"
    assert "would use 4 GPUs (2 already, 2 more); the limit is 3" in gpus["message"]
    assert decide(me, serve("b", gpus=1))["allowed"]
    servers = decide(me, serve("c"))
    assert servers["reason"] == "max_servers_exceeded"
    assert servers["message"] == f"user {user} already runs 2 servers; the limit is 2"


def test_a_dry_run_decides_without_recording(client: Client, user: str) -> None:
    put_contract(client, "user", user, max_servers=1)
    me = client(user)
    assert decide(me, {**serve("a"), "dry_run": True})["allowed"]
    assert decide(me, serve("b"))["allowed"]
    # Nor does a dry run hold tokens: twice 80 fits a budget of 100.
    put_contract(client, "user", user, token_budget=100)
    for _ in range(2):
        dry = decide(me, {**infer(max_tokens=80), "dry_run": True})
        assert dry["allowed"] and "reservation" not in dry
    assert decide(me, infer(max_tokens=80))["allowed"]
    assert not decide(me, infer(max_tokens=80))["allowed"]


def test_a_team_contract_holds_for_its_members_together(client: Client, user: str) -> None:
    team = f"team-{uuid.uuid4().hex[:6]}"
    put_contract(client, "team", team, max_servers=1)
    first, second = client(f"{user}-1", teams=(team,)), client(f"{user}-2", teams=(team,))
    assert decide(first, serve("a"))["allowed"]
    refused = decide(second, serve("b"))
    assert refused["reason"] == "max_servers_exceeded"
    assert f"team {team} already runs 1 servers" in refused["message"]
    outsider = decide(client(f"{user}-3"), {**serve("c"), "resource": {"team": team}})
    assert outsider["reason"] == "team_not_member"


def test_request_rate_and_token_budget(client: Client, user: str) -> None:
    put_contract(client, "user", user, requests_per_minute=3, token_budget=1000)
    me = client(user)
    early_in_a_minute()
    first = decide(me, infer(max_tokens=400))
    assert first["allowed"] and first["reservation"]
    assert decide(me, infer(max_tokens=400))["allowed"]
    # 800 held: 400 more would go over the budget.
    budget = decide(me, infer(max_tokens=400))
    assert budget["reason"] == "token_budget_exhausted"
    assert budget["limit"] == 1000
    # The gateway records what the first request really used: 50 tokens, not 400.
    gateway = client("service:gateway", roles=("service",))
    recorded = gateway.post(
        "/usage",
        json={
            "principal": {"subject": user},
            "model": "smollm2",
            "reservation": first["reservation"],
            "prompt_tokens": 20,
            "completion_tokens": 30,
        },
    )
    assert recorded.json() == {"recorded": True, "reservation_found": True}
    assert decide(me, infer(max_tokens=400))["allowed"]  # 50 + 400 + 400 <= 1000
    rate = decide(me, infer(max_tokens=1))
    assert rate["reason"] == "request_rate_exceeded"
    assert rate["message"] == f"user {user} reached the limit of 3 requests per minute"
    usage = me.get("/usage", params={"period": "day"}).json()
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (1, 20, 30)
    assert usage["models"][0]["model"] == "smollm2"


def test_the_scaling_budget_per_request(client: Client, user: str) -> None:
    put_contract(client, "user", user, max_budget=8)
    me = client(user)
    assert decide(me, infer(budget=8))["allowed"]
    assert decide(me, infer(budget=16))["reason"] == "max_budget_exceeded"


def test_downloads_only_for_those_whose_contract_allows_them(client: Client, user: str) -> None:
    download = {"action": "download", "resource": {"model": "smollm2"}}
    put_contract(client, "user", user, downloads=True)
    allowed = decide(client(user), download)
    assert allowed["allowed"] and allowed["reason"] == "allowed"
    assert "reservation" not in allowed  # nothing is held for a download
    assert client(user).get("/contracts/me").json()["limits"]["downloads"] is True
    admin = client("root", roles=("admin",))
    assert admin.get(f"/contracts/user/{user}").json()["downloads"] is True
    # Without a contract that allows them: the default, no.
    other = f"{user}-other"
    assert client(other).get("/contracts/defaults").json()["downloads"] is False
    assert decide(client(other), download) == {
        "allowed": False,
        "reason": "downloads_not_allowed",
        "message": f"user {other} may not download models",
    }
    # A team can forbid them to a member whose own contract allows them.
    team = f"team-{uuid.uuid4().hex[:6]}"
    put_contract(client, "team", team, downloads=False)
    refused = decide(client(user, teams=(team,)), download)
    assert refused["reason"] == "downloads_not_allowed"
    assert refused["message"] == f"team {team} may not download models"
    assert decide(admin, download)["reason"] == "admin"


def test_only_services_and_admins_act_for_someone_else(client: Client, user: str) -> None:
    body = {**infer(), "principal": {"subject": "someone-else"}}
    refused = client(user).post("/decide", json=body)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "service_only"
    gateway = client("service:gateway", roles=("service",))
    assert decide(gateway, body)["allowed"]
    # A user's teams and roles come from the token, never from the body.
    body = {**infer(), "principal": {"subject": user, "roles": ["admin"]}}
    assert decide(client(user), body)["reason"] == "allowed"


def test_contracts_are_admin_only_and_validated(client: Client, user: str) -> None:
    refused = client(user).put(f"/contracts/user/{user}", json={"max_replicas": 50})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_only"
    admin = client("root", roles=("admin",))
    invalid = admin.put(f"/contracts/user/{user}", json={"max_replicas": -1})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["code"] == "invalid_request"
    assert admin.put(f"/contracts/user/{user}", json={"max_servers": 1}).status_code == 200
    assert admin.get(f"/contracts/user/{user}").json()["max_servers"] == 1
    assert admin.delete(f"/contracts/user/{user}").status_code == 204
    missing = admin.get(f"/contracts/user/{user}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "contract_not_found"


def test_stopping_someone_elses_server_is_refused(client: Client, user: str) -> None:
    owner, other = client(user), client(f"{user}-other")
    assert decide(owner, serve("mine"))["allowed"]
    stop = {"action": "stop", "resource": {"namespace": "default", "name": "mine"}}
    assert decide(other, stop)["reason"] == "not_owner"
    assert decide(owner, stop)["allowed"]
    assert decide(client("root", roles=("admin",)), stop)["allowed"]
