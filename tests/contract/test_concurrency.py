"""Limits hold under parallel decisions spread over two replicas of the service.

Two service processes share one database, as two replicas behind a Kubernetes Service
would; the decisions go to both at once. Counting in a replica's memory (LiteLLM's
known bug) would let up to twice the limit through.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import early_in_a_minute


def put_contract(
    replicas: list[RunningService], signer: TokenSigner, kind: str, name: str, **limits: Any
) -> None:
    token = signer.sign("root", roles=("admin",))
    response = httpx.put(
        f"{replicas[0].url}/contracts/{kind}/{name}",
        json=limits,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text


def decide_in_parallel(
    replicas: list[RunningService],
    signer: TokenSigner,
    principals: list[dict[str, Any]],
    bodies: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every body at once, the i-th for the i-th principal (cycled) to the i-th replica
    (cycled), asked by the gateway (a service token): only services decide for real."""
    token = signer.sign("service:gateway", roles=("service",))

    async def run() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as c:
            responses = await asyncio.gather(
                *(
                    c.post(
                        f"{replicas[i % len(replicas)].url}/decide",
                        json={**body, "principal": principals[i % len(principals)]},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    for i, body in enumerate(bodies)
                )
            )
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses][:3]
        return [r.json() for r in responses]

    return asyncio.run(run())


def person(subject: str, *teams: str) -> dict[str, Any]:
    return {"subject": subject, "teams": list(teams)}


def serve(name: str, gpus: int = 0) -> dict[str, Any]:
    resource = {"namespace": "default", "name": name, "model": "m", "runtime": "vllm"}
    return {"action": "serve", "resource": {**resource, "gpus": gpus}}


def allowed(decisions: list[dict[str, Any]]) -> int:
    return sum(1 for decision in decisions if decision["allowed"])


def test_servers_per_user(
    contract_replicas: list[RunningService], signer: TokenSigner, user: str
) -> None:
    put_contract(contract_replicas, signer, "user", user, max_servers=5)
    decisions = decide_in_parallel(
        contract_replicas, signer, [person(user)], [serve(f"s{i}") for i in range(40)]
    )
    assert allowed(decisions) == 5
    assert {d["reason"] for d in decisions if not d["allowed"]} == {"max_servers_exceeded"}


def test_gpus_per_user(
    contract_replicas: list[RunningService], signer: TokenSigner, user: str
) -> None:
    put_contract(contract_replicas, signer, "user", user, max_gpus=4)
    decisions = decide_in_parallel(
        contract_replicas, signer, [person(user)], [serve(f"s{i}", gpus=1) for i in range(20)]
    )
    assert allowed(decisions) == 4


def test_servers_per_team_across_its_members(
    contract_replicas: list[RunningService], signer: TokenSigner, user: str
) -> None:
    team = f"team-{uuid.uuid4().hex[:6]}"
    put_contract(contract_replicas, signer, "team", team, max_servers=3)
    members = [person(f"{user}-{i}", team) for i in range(4)]
    decisions = decide_in_parallel(
        contract_replicas, signer, members, [serve(f"s{i}") for i in range(32)]
    )
    assert allowed(decisions) == 3


def test_requests_per_minute(
    contract_replicas: list[RunningService], signer: TokenSigner, user: str
) -> None:
    put_contract(contract_replicas, signer, "user", user, requests_per_minute=10)
    early_in_a_minute()
    body = {"action": "infer", "resource": {"model": "m", "max_tokens": 1}}
    decisions = decide_in_parallel(contract_replicas, signer, [person(user)], [body] * 60)
    assert allowed(decisions) == 10
    assert {d["reason"] for d in decisions if not d["allowed"]} == {"request_rate_exceeded"}


def test_token_budget(
    contract_replicas: list[RunningService], signer: TokenSigner, user: str
) -> None:
    put_contract(contract_replicas, signer, "user", user, token_budget=1000, budget_period="day")
    body = {"action": "infer", "resource": {"model": "m", "max_tokens": 100}}
    decisions = decide_in_parallel(contract_replicas, signer, [person(user)], [body] * 30)
    assert allowed(decisions) == 10
    reservations = {d["reservation"] for d in decisions if d["allowed"]}
    assert len(reservations) == 10
