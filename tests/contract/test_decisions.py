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


class Acting:
    """The gateway deciding for a user, as it does before it writes a ModelServe or forwards
    a request: a service token, the user in `principal`. Only services decide for real."""

    def __init__(
        self, client: Client, subject: str, teams: tuple[str, ...] = (), roles: tuple[str, ...] = ()
    ) -> None:
        self._gateway = client("service:gateway", roles=("service",))
        self._principal = {"subject": subject, "teams": list(teams), "roles": list(roles)}

    def post(self, path: str, json: dict[str, Any]) -> httpx.Response:
        return self._gateway.post(path, json={"principal": self._principal, **json})


def serve(name: str, namespace: str = "default", **resource: Any) -> dict[str, Any]:
    body = {"namespace": namespace, "name": name, "model": "smollm2", "runtime": "llamacpp"}
    return {"action": "serve", "resource": {**body, **resource}}


def infer(**resource: Any) -> dict[str, Any]:
    return {"action": "infer", "resource": {"model": "smollm2", **resource}}


def decide(client: httpx.Client | Acting, body: dict[str, Any]) -> dict[str, Any]:
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
    me = Acting(client, user)
    assert decide(me, serve(f"{user}-a", replicas=5))["allowed"]
    over = decide(me, serve(f"{user}-b", replicas=6))
    assert over == {
        "allowed": False,
        "reason": "max_replicas_exceeded",
        "message": f"6 replicas is over the limit of 5 per server for user {user}",
        "limit": 5,
    }
    elsewhere = decide(me, serve(f"{user}-c", namespace="kube-system"))
    assert elsewhere["reason"] == "namespace_not_allowed"
    assert elsewhere["limit"] == ["default", "inference"]


def test_a_users_contract_replaces_the_defaults_it_sets(client: Client, user: str) -> None:
    put_contract(client, "user", user, namespaces=["research"], models=["smollm2*"], max_replicas=2)
    me = Acting(client, user)
    assert decide(me, serve(f"{user}-a", namespace="research", replicas=2))["allowed"]
    assert decide(me, serve(f"{user}-b", namespace="default"))["reason"] == "namespace_not_allowed"
    assert decide(me, serve(f"{user}-c", namespace="research", model="llama"))["reason"] == (
        "model_not_allowed"
    )
    mine = client(user).get("/contracts/me").json()
    assert mine["limits"]["namespaces"] == ["research"]
    assert mine["limits"]["max_replicas"] == 2


def test_servers_and_gpus_are_counted_across_decisions(client: Client, user: str) -> None:
    put_contract(client, "user", user, max_servers=2, max_gpus=3)
    me = Acting(client, user)
    assert decide(me, serve(f"{user}-a", gpus=1, replicas=2))["allowed"]
    # The same server decided again (an update) does not count twice.
    assert decide(me, serve(f"{user}-a", gpus=1, replicas=2))["allowed"]
    gpus = decide(me, serve(f"{user}-b", gpus=2))
    assert gpus["reason"] == "max_gpus_exceeded"
    assert "would use 4 GPUs (2 already, 2 more); the limit is 3" in gpus["message"]
    assert decide(me, serve(f"{user}-b", gpus=1))["allowed"]
    servers = decide(me, serve(f"{user}-c"))
    assert servers["reason"] == "max_servers_exceeded"
    assert servers["message"] == f"user {user} already runs 2 servers; the limit is 2"


def test_a_dry_run_decides_without_recording(client: Client, user: str) -> None:
    put_contract(client, "user", user, max_servers=1)
    me = Acting(client, user)
    assert decide(me, {**serve(f"{user}-a"), "dry_run": True})["allowed"]
    assert decide(client(user), {**serve(f"{user}-a"), "dry_run": True})["allowed"]
    assert decide(me, serve(f"{user}-b"))["allowed"]
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
    first = Acting(client, f"{user}-1", teams=(team,))
    second = Acting(client, f"{user}-2", teams=(team,))
    assert decide(first, serve(f"{user}-a"))["allowed"]
    refused = decide(second, serve(f"{user}-b"))
    assert refused["reason"] == "max_servers_exceeded"
    assert f"team {team} already runs 1 servers" in refused["message"]
    outsider = decide(
        Acting(client, f"{user}-3"),
        {"action": "serve", "resource": {**serve(f"{user}-c")["resource"], "team": team}},
    )
    assert outsider["reason"] == "team_not_member"


def test_request_rate_and_token_budget(client: Client, user: str) -> None:
    put_contract(client, "user", user, requests_per_minute=3, token_budget=1000)
    me = Acting(client, user)
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
    usage = client(user).get("/usage", params={"period": "day"}).json()
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (1, 20, 30)
    assert usage["models"][0]["model"] == "smollm2"


def test_the_scaling_budget_per_request(client: Client, user: str) -> None:
    put_contract(client, "user", user, max_budget=8)
    me = Acting(client, user)
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
    body = {**infer(), "principal": {"subject": user, "roles": ["admin"]}, "dry_run": True}
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
    assert decide(Acting(client, user), serve(f"{user}-mine"))["allowed"]
    stop = {"action": "stop", "resource": {"namespace": "default", "name": f"{user}-mine"}}
    assert decide(other, stop)["reason"] == "not_owner"
    assert decide(owner, stop)["allowed"]
    assert decide(client("root", roles=("admin",)), stop)["allowed"]


# --- Trust boundaries (issue 14) ------------------------------------------------------


def test_only_services_decide_for_real(client: Client, user: str) -> None:
    """A decision that is not a dry run records a server or holds tokens: a user (or an
    admin) asking for themselves may only dry-run, or fill the ledger with claims."""
    for who in (client(user), client(f"{user}-admin", roles=("admin",))):
        for body in (serve(f"{user}-a"), {**serve(f"{user}-a"), "action": "scale"}, infer()):
            refused = who.post("/decide", json=body)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "service_only"
            assert decide(who, {**body, "dry_run": True})["allowed"]
    assert decide(Acting(client, user), serve(f"{user}-a"))["allowed"]


def test_nobody_but_the_owner_serves_scales_or_stops_a_server(client: Client, user: str) -> None:
    """A second user, within every limit of their own, may not change the first user's
    server, whichever action they name; the ledger keeps its owner."""
    other = f"{user}-other"
    assert decide(Acting(client, user), serve(f"{user}-mine", replicas=1))["allowed"]
    name = {"namespace": "default", "name": f"{user}-mine"}
    for action in ("serve", "scale", "stop"):
        body = {"action": action, "resource": {**serve(f"{user}-mine")["resource"], **name}}
        for asking in (Acting(client, other), client(other)):
            denied = decide(asking, {**body, "dry_run": True})
            assert denied["reason"] == "not_owner", (action, denied)
            assert f"belongs to {user}" in denied["message"]
        assert decide(Acting(client, other), body)["reason"] == "not_owner"
        assert decide(Acting(client, user), {**body, "dry_run": True})["allowed"]
        admin = decide(Acting(client, "root", roles=("admin",)), {**body, "dry_run": True})
        assert admin["allowed"]
    # Still the owner's: a team mate is no owner either.
    team = f"team-{uuid.uuid4().hex[:6]}"
    mate = Acting(client, f"{user}-mate", teams=(team,))
    shared = serve(f"{user}-shared")
    assert decide(Acting(client, user, teams=(team,)), shared)["allowed"]
    stop = {"action": "stop", "resource": {"namespace": "default", "name": f"{user}-shared"}}
    assert decide(mate, stop)["reason"] == "not_owner"


def test_platform_namespaces_are_for_platform_admins(client: Client, user: str) -> None:
    put_contract(client, "user", user, namespaces=["*"])
    for action in ("serve", "scale", "stop"):
        body = {**serve(f"{user}-shared", namespace="modelserve"), "action": action}
        refused = decide(Acting(client, user), {**body, "dry_run": True})
        assert refused["reason"] == "platform_namespace", refused
        assert "only platform admins" in refused["message"]
    admin = Acting(client, "root", roles=("admin",))
    assert decide(admin, serve(f"{user}-shared", namespace="modelserve"))["allowed"]


def test_the_model_allowlist_holds_for_the_model_id_too(client: Client, user: str) -> None:
    """A served name is the user's to choose: the weights (the model record's id) must be
    allowed as well."""
    put_contract(client, "user", user, models=["smollm2*"])
    me = Acting(client, user)
    assert decide(me, serve(f"{user}-a", model_id="smollm2-q4"))["allowed"]
    other = decide(me, serve(f"{user}-b", model_id="llama-70b"))
    assert other["reason"] == "model_not_allowed"
    assert "model id 'llama-70b'" in other["message"]


def test_the_scaling_budget_has_a_finite_default(client: Client, user: str) -> None:
    assert client(user).get("/contracts/defaults").json()["max_budget"] == 16
    me = Acting(client, user)
    assert decide(me, {**infer(budget=16), "dry_run": True})["allowed"]
    assert decide(me, {**infer(budget=17), "dry_run": True})["reason"] == "max_budget_exceeded"


def test_client_mistakes_are_4xx_json_never_500(client: Client, user: str) -> None:
    """NUL bytes, numbers PostgreSQL cannot hold, a serve without the server it is about."""
    admin = client("root", roles=("admin",))
    me = Acting(client, user)
    answers = [
        admin.get("/contracts/user/a%00b"),
        admin.put("/contracts/user/a%00b", json={"max_servers": 1}),
        admin.put(f"/contracts/user/{user}", json={"models": ["a\x00b"]}),
        admin.put(f"/contracts/user/{user}", json={"max_replicas": 2**40}),
        admin.put(f"/contracts/user/{user}", json={"token_budget": 2**70}),
        me.post("/decide", json={**infer(), "principal": {"subject": "a\x00b"}}),
        me.post("/decide", json=infer(max_tokens=2**70)),
        me.post("/decide", json=serve(f"{user}-a", replicas=2**40)),
        client(user).post("/decide", json={"action": "serve", "dry_run": True}),
        client(user).post("/decide", json={"action": "serve", "resource": {}, "dry_run": True}),
        client(user).get("/usage", params={"user": "a\x00b"}),
        client("service:gateway", roles=("service",)).post(
            "/usage",
            json={
                "principal": {"subject": user},
                "model": "m",
                "prompt_tokens": 2**70,
                "completion_tokens": 0,
            },
        ),
        client("service:gateway", roles=("service",)).post(
            "/usage",
            json={
                "principal": {"subject": user},
                "model": "a\x00b",
                "prompt_tokens": 1,
                "completion_tokens": 0,
            },
        ),
    ]
    for answer in answers:
        assert 400 <= answer.status_code < 500, (answer.request.url, answer.text)
        assert answer.json()["error"]["code"], answer.text
    # A serve decision with its server named but no model is an answer, not an error.
    named = {"action": "serve", "resource": {"namespace": "default", "name": f"{user}-x"}}
    assert decide(client(user), {**named, "dry_run": True})["allowed"]
