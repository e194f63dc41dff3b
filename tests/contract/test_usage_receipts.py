"""A usage record the gateway sends again (its answer lost, its lease run out) is counted
once: the contract service remembers the ids of the records it counted."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

Client = Callable[..., httpx.Client]


def infer(max_tokens: int) -> dict[str, Any]:
    return {"action": "infer", "resource": {"model": "smollm2", "max_tokens": max_tokens}}


def decide(gateway: httpx.Client, user: str, body: dict[str, Any]) -> dict[str, Any]:
    """A decision for `user`, asked as the gateway does (only services decide for real)."""
    response = gateway.post("/decide", json={"principal": {"subject": user}, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def put_contract(client: Client, kind: str, name: str, **limits: Any) -> None:
    response = client("root", roles=("admin",)).put(f"/contracts/{kind}/{name}", json=limits)
    assert response.status_code == 200, response.text


def test_a_usage_record_sent_twice_is_counted_once(client: Client, user: str) -> None:
    put_contract(client, "user", user, token_budget=1000)
    me = client(user)
    gateway = client("service:gateway", roles=("service",))
    held = decide(gateway, user, infer(max_tokens=400))
    record = {
        "id": str(uuid.uuid4()),
        "principal": {"subject": user},
        "model": "smollm2",
        "reservation": held["reservation"],
        "prompt_tokens": 200,
        "completion_tokens": 300,
    }
    first = gateway.post("/usage", json=record)
    assert first.status_code == 200, first.text
    assert first.json()["reservation_found"] is True
    again = gateway.post("/usage", json=record)
    assert again.status_code == 200, again.text
    usage = me.get("/usage", params={"period": "day"}).json()
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (1, 200, 300)
    assert again.json()["duplicate"] is True
    # 500 used once: 500 more fit the budget of 1000 (counted twice, they would not).
    assert decide(gateway, user, infer(max_tokens=500))["allowed"]
    # A record without an id (an older sender) counts every time, as before.
    plain = {key: value for key, value in record.items() if key not in ("id", "reservation")}
    assert "duplicate" not in gateway.post("/usage", json=plain).json()
