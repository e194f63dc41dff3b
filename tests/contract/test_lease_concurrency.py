"""Grants, usage batches and give-backs of many holders at once, through two replicas, on
the same counters: no call fails (no deadlock: every writer locks leases, reservations,
then counter rows, in one order), and when every lease is given back and every record is
in, the counters hold exactly what the records used and nothing stays reserved."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx
import psycopg

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.platform import RunningService

HOLDERS = 12
ROUNDS = 6


def test_holders_granting_settling_and_giving_back_at_once_leave_exact_counters(
    contract_replicas: list[RunningService],
    signer: TokenSigner,
    contract_database: str,
    user: str,
) -> None:
    team = f"team-{uuid.uuid4().hex[:6]}"
    service = {"Authorization": f"Bearer {signer.sign('service:gateway', roles=('service',))}"}
    admin = {"Authorization": f"Bearer {signer.sign('root', roles=('admin',))}"}
    for kind, name in (("user", user), ("team", team)):
        response = httpx.put(
            f"{contract_replicas[0].url}/contracts/{kind}/{name}",
            json={"token_budget": 10**9},
            headers=admin,
        )
        assert response.status_code == 200, response.text
    principal = {"subject": user, "teams": [team]}
    scopes = (f"user:{user}", f"team:{team}")

    async def holder(client: httpx.AsyncClient, index: int) -> int:
        name, tokens = f"gateway-{index}", 0
        for round_ in range(ROUNDS):
            url = contract_replicas[(index + round_) % 2].url
            answer = await client.post(
                f"{url}/leases",
                json={
                    "holder": name,
                    "principal": principal,
                    "want": [
                        {"scope": s, "metric": "tokens/month", "amount": 1000} for s in scopes
                    ],
                },
            )
            assert answer.status_code == 200, answer.text
            grants = answer.json()["leases"]
            assert [g["granted"] for g in grants] == [1000, 1000]
            requests = random.randint(1, 8)
            records = []
            for _ in range(requests):
                actual = random.randint(1, 100)
                tokens += actual
                counters = [
                    {"scope": g["scope"], "metric": g["metric"], "lease": g["lease"], "hold": 100}
                    for g in grants
                ]
                records.append(
                    {
                        "id": str(uuid.uuid4()),
                        "principal": principal,
                        "team": team,
                        "model": "m",
                        "prompt_tokens": actual,
                        "completion_tokens": 0,
                        "counters": counters,
                    }
                )
            back = [{"lease": g["lease"], "taken": 100 * requests} for g in grants]
            calls = [
                client.post(f"{url}/usage/batch", json={"records": records}),
                client.post(f"{url}/leases", json={"holder": name, "give_back": back}),
            ]
            random.shuffle(calls)  # records before or after the give-back
            for response in await asyncio.gather(*calls):
                assert response.status_code == 200, response.text
        return tokens

    async def run() -> list[int]:
        async with httpx.AsyncClient(
            timeout=60, headers=service, limits=httpx.Limits(max_connections=100)
        ) as client:
            return await asyncio.gather(*(holder(client, i) for i in range(HOLDERS)))

    used = sum(asyncio.run(run()))
    with psycopg.connect(contract_database, autocommit=True) as conn:
        for scope in scopes:
            row = conn.execute(
                "SELECT used, reserved FROM counters WHERE scope = %s AND metric = 'tokens/month'",
                [scope],
            ).fetchone()
            assert row == (used, 0), scope
        left: Any = conn.execute(
            "SELECT count(*) FROM leases WHERE scope = ANY (%s)", [list(scopes)]
        ).fetchone()
        assert left == (0,)
