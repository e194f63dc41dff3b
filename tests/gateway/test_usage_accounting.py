"""Usage is never lost or free: the gateway, the contract service and PostgreSQL as
processes, the control plane with the operator, and an OpenAI-shaped server of this
test's own on loopback (behind `external` ModelServes) whose answers report known usage
and can be made to fail, hang or stream without end on demand.

- a scaled request that fails or is abandoned settles every upstream call that answered;
- a scaled request without max_tokens reserves tokens for every candidate;
- usage goes through the durable outbox: a contract outage and a gateway killed with
  SIGKILL lose none of it, and the contract counts each record once;
- a request cut off by a killed gateway, which never has a usage record, is charged the
  tokens it held once the gateway's lease expires: never free.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from aiohttp import web

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.tokens import TokenSigner
from modelserve.testbed.contract_limits import put_contract
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningOperator, RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.threaded_http import ThreadedApp

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

# What every answer of the fake server reports.
PROMPT, COMPLETION = 10, 5
QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


def _chunk(content: str) -> bytes:
    event = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}}],
    }
    return b"data: " + json.dumps(event).encode() + b"\n\n"


class FakeServer(ThreadedApp):
    """OpenAI-shaped, on loopback, in a thread. Each model name picks a behaviour:

    - acct-words: answers at once;
    - acct-flaky: the first two calls of a round answer at once, the third answers 500;
    - acct-hang: the first two calls answer at once, the third never does;
    - acct-slow: a stream of a chunk every 50 ms for 30 s.
    """

    MODELS = ("acct-words", "acct-flaky", "acct-hang", "acct-slow")

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()
        self.answered: collections.Counter[str] = collections.Counter()
        self.hanging = threading.Event()

    def reset(self) -> None:
        self.calls.clear()
        self.answered.clear()
        self.hanging.clear()

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._answer)
        return app

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m} for m in self.MODELS]})

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body["model"]
        self.calls[model] += 1
        call = self.calls[model]
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for index in range(600):
                await response.write(_chunk(f" {index}"))
                await asyncio.sleep(0.05)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        if model in ("acct-flaky", "acct-hang") and call % 3 == 0:
            if model == "acct-hang":
                self.hanging.set()
                await asyncio.sleep(3600)
            return web.json_response({"error": {"message": "out of memory"}}, status=500)
        self.answered[model] += 1
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": "5"},
            "finish_reason": "stop",
        }
        usage = {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION, "total_tokens": 15}
        return web.json_response({"choices": [choice], "usage": usage})


def modelserve(name: str, url: str) -> dict[str, Any]:
    """alice's server, shared with team nlp: every user of these tests is in it."""
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}},
        "spec": {"runtime": "external", "model": {"servedName": name}, "external": {"url": url}},
    }


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def servers(
    crds: KubeCluster, operator: RunningOperator, cluster_namespace: str, fake: FakeServer
) -> None:
    bodies = [modelserve(model, fake.url) for model in FakeServer.MODELS]
    crds.kubectl("apply", "-n", cluster_namespace, "-f", "-", stdin=yaml.safe_dump_all(bodies))

    def ready() -> bool:
        items = crds.get_json("-n", cluster_namespace, "ms")["items"]
        phases = [(item.get("status") or {}).get("phase") for item in items]
        return phases == ["Ready"] * len(FakeServer.MODELS)

    wait_for(ready, timeout=90, what="the fake servers to be Ready")


@pytest.fixture
def gateway(
    servers: None,
    gateway_kube: str,
    contract_service: RunningService,
    start_gateway: Callable[..., RunningService],
    fake: FakeServer,
) -> RunningService:
    """A gateway that decides with the contract service and retries usage quickly."""
    fake.reset()
    return start_gateway(
        GATEWAY_KUBECONFIG=gateway_kube,
        GATEWAY_CONTRACT_URL=contract_service.url,
        GATEWAY_USAGE_FLUSH_SECONDS="0.2",
        GATEWAY_USAGE_RETRY_SECONDS="0.2",
        GATEWAY_USAGE_RETRY_MAX_SECONDS="1",
        GATEWAY_USAGE_LEASE_SECONDS="2",
        GATEWAY_SCALING_KEEPALIVE_SECONDS="0.2",
        # One call at a time: a candidate begins once the one before it was counted.
        GATEWAY_SCALING_CONCURRENCY="1",
    )


def chat(gateway: RunningService, signer: TokenSigner, user: str, **body: Any) -> httpx.Response:
    """A chat completion as `user`, once the watch routes the model."""
    headers = {"Authorization": f"Bearer {signer.sign(user, teams=['nlp'])}"}

    def attempt() -> httpx.Response | None:
        answer = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"messages": QUESTION, **body},
            headers=headers,
            timeout=60,
        )
        unrouted = answer.status_code in (404, 503) and answer.json()["error"]["code"] in (
            "model_not_found",
            "model_not_ready",
        )
        return None if unrouted else answer

    return wait_for(attempt, timeout=30, what=f"the gateway to route {body['model']}")


def usage_of(contract: RunningService, signer: TokenSigner, user: str) -> dict[str, Any]:
    """The user's usage today, as the contract service counted it."""
    answer = httpx.get(
        f"{contract.url}/usage",
        params={"user": user, "period": "day"},
        headers={"Authorization": f"Bearer {signer.sign('root', roles=['admin'])}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    usage: dict[str, Any] = answer.json()
    return usage


def recorded(contract: RunningService, signer: TokenSigner, user: str, requests: int) -> Any:
    """The user's usage once `requests` requests of theirs are counted."""

    def counted() -> dict[str, Any] | None:
        usage = usage_of(contract, signer, user)
        return usage if usage["requests"] >= requests else None

    return wait_for(counted, timeout=30, what=f"{requests} requests of {user} to be counted")


# --- Scaled requests pay for what they made -----------------------------------------------


def test_a_failed_scaled_request_pays_for_the_calls_that_answered(
    gateway: RunningService, contract_service: RunningService, signer: TokenSigner
) -> None:
    # Three candidates: two answer, the third fails with a 500, so the request fails.
    answer = chat(
        gateway,
        signer,
        "fay",
        model="acct-flaky",
        budget=3,
        algorithm="self-consistency",
        max_tokens=8,
    )
    # A model server's 5xx in a scaling call is an OpenAI-shaped 502 naming its status.
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["code"] == "upstream_status"
    assert "answered 500" in error["message"]
    usage = recorded(contract_service, signer, "fay", 1)
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (
        1,
        2 * PROMPT,
        2 * COMPLETION,
    )


def test_an_abandoned_scaled_request_pays_for_the_calls_that_answered(
    gateway: RunningService, contract_service: RunningService, signer: TokenSigner, fake: FakeServer
) -> None:
    chat(gateway, signer, "abe", model="acct-words", max_tokens=8)  # routed, and counted once
    headers = {"Authorization": f"Bearer {signer.sign('abe', teams=['nlp'])}"}
    body = {
        "model": "acct-hang",
        "messages": QUESTION,
        "budget": 3,
        "algorithm": "self-consistency",
        "max_tokens": 8,
    }
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={**body, "stream": True},
        headers=headers,
        timeout=60,
    ) as begun:
        assert begun.status_code == 200
        # Two candidates answered (one at a time), the third hangs: the client leaves.
        assert fake.hanging.wait(30), "the third candidate never began"
        assert fake.answered["acct-hang"] == 2
    usage = recorded(contract_service, signer, "abe", 2)
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (
        2,
        3 * PROMPT,
        3 * COMPLETION,
    )


def test_a_scaled_request_without_max_tokens_reserves_for_every_candidate(
    gateway: RunningService, contract_service: RunningService, signer: TokenSigner
) -> None:
    # 512 tokens held per candidate: one answer fits a budget of 1000, three do not.
    put_contract(contract_service.url, signer, "user", "rex", token_budget=1000)
    assert chat(gateway, signer, "rex", model="acct-words").status_code == 200
    recorded(contract_service, signer, "rex", 1)  # its 15 tokens settled, 512 given back
    scaled = chat(
        gateway, signer, "rex", model="acct-words", budget=3, algorithm="self-consistency"
    )
    assert scaled.status_code == 429, scaled.text
    assert scaled.json()["error"]["code"] == "token_budget_exhausted"
    # With max_tokens, budget x max_tokens: 3 x 100 fits.
    allowed = chat(
        gateway,
        signer,
        "rex",
        model="acct-words",
        budget=3,
        algorithm="self-consistency",
        max_tokens=100,
    )
    assert allowed.status_code == 200, allowed.text


def test_the_default_contract_caps_the_scaling_budget(
    gateway: RunningService, signer: TokenSigner
) -> None:
    # No contract for "max": the contract service's defaults hold (max_budget 16).
    body = {"model": "acct-words", "algorithm": "self-consistency", "max_tokens": 4}
    over = chat(gateway, signer, "max", budget=17, **body)
    assert over.status_code == 403, over.text
    assert over.json()["error"]["code"] == "max_budget_exceeded"
    assert chat(gateway, signer, "max", budget=16, **body).status_code == 200


# --- The outbox: nothing lost, nothing counted twice ----------------------------------------


def outbox(database: str) -> list[tuple[Any, ...]]:
    """The gateway's outbox rows: (id, record, attempts)."""
    with psycopg.connect(database, autocommit=True) as conn:
        return conn.execute("SELECT id, record, attempts FROM usage_outbox").fetchall()


def test_usage_survives_a_contract_outage_and_a_killed_gateway(
    gateway: RunningService,
    contract_service: RunningService,
    gateway_database: str,
    signer: TokenSigner,
) -> None:
    # Three answers, delivered while all is well.
    for _ in range(3):
        assert chat(gateway, signer, "cai", model="acct-words", max_tokens=8).status_code == 200
    # Two streams begin (decided while the contract service is up).
    streams = {}
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        for user in ("ann", "bea"):
            request = http.build_request(
                "POST",
                "/v1/chat/completions",
                json={
                    "model": "acct-slow",
                    "messages": QUESTION,
                    "stream": True,
                    "max_tokens": 900,
                },
                headers={"Authorization": f"Bearer {signer.sign(user, teams=['nlp'])}"},
            )
            streams[user] = http.send(request, stream=True)
            assert streams[user].status_code == 200
        lines = {user: streams[user].iter_lines() for user in streams}
        for user in streams:
            assert '" 0"' in next(line for line in lines[user] if line)
        recorded(contract_service, signer, "cai", 3)
        contract_service.stop()
        # ann leaves mid-stream while the contract service is down: her usage is settled
        # (the chunks she was sent) and waits in the outbox, tried again and again.
        received = sum(
            1 for _ in zip(range(5), (line for line in lines["ann"] if line), strict=False)
        )
        streams["ann"].close()

        def retried() -> list[tuple[Any, ...]] | None:
            rows = outbox(gateway_database)
            return rows if rows and rows[0][2] >= 5 else None

        (row,) = wait_for(retried, timeout=60, what="ann's usage to be tried five times")
        usage_id, record = row[0], row[1]
        assert record["principal"]["subject"] == "ann"
        assert record["completion_tokens"] >= 1 + received
        # The gateway dies with bea's stream half-way: SIGKILL, nothing runs on the way out.
        pid = gateway.process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(httpx.HTTPError):
            for _ in lines["bea"]:
                pass
        streams["bea"].close()
    # bea's request died with the gateway, unsettled (the contract charges her its
    # reservation when that expires): ann's usage is all there is, waiting in the outbox.
    assert [found[0] for found in outbox(gateway_database)] == [usage_id]

    # Both come back: ann's usage arrives, once.
    contract_service.start()
    gateway.start()
    usage = recorded(contract_service, signer, "ann", 1)
    assert (usage["requests"], usage["completion_tokens"]) == (1, record["completion_tokens"])
    wait_for(lambda: not outbox(gateway_database), timeout=30, what="the outbox to be empty")
    # The same record delivered again (a delivery whose answer was lost) is not counted again.
    with psycopg.connect(gateway_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO usage_outbox (id, record) VALUES (%s, %s)",
            [usage_id, json.dumps(record)],
        )
    wait_for(lambda: not outbox(gateway_database), timeout=30, what="the copy to be delivered")
    assert usage_of(contract_service, signer, "ann")["requests"] == 1
    cai = usage_of(contract_service, signer, "cai")
    assert (cai["requests"], cai["prompt_tokens"], cai["completion_tokens"]) == (
        3,
        3 * PROMPT,
        3 * COMPLETION,
    )


def test_the_outbox_loops_fail_loudly_and_come_back(
    gateway: RunningService,
    contract_service: RunningService,
    gateway_database: str,
    signer: TokenSigner,
) -> None:
    assert chat(gateway, signer, "dov", model="acct-words", max_tokens=8).status_code == 200
    recorded(contract_service, signer, "dov", 1)
    # The outbox goes away under the running gateway: its writer and sender both fail.
    with psycopg.connect(gateway_database, autocommit=True) as conn:
        conn.execute("ALTER TABLE usage_outbox RENAME TO usage_outbox_away")
    try:
        assert chat(gateway, signer, "dov", model="acct-words", max_tokens=8).status_code == 200

        def logged() -> bool:
            log = gateway.process.log_path.read_text(errors="replace")
            return all(
                f"usage-outbox-{loop} failed" in log and "UndefinedTable" in log
                for loop in ("writer", "sender")
            )

        wait_for(logged, timeout=30, what="both loops' failures in the gateway's log")
    finally:
        with psycopg.connect(gateway_database, autocommit=True) as conn:
            conn.execute("ALTER TABLE usage_outbox_away RENAME TO usage_outbox")
    # Started again, they write and send what waited: nothing lost, the gateway alive.
    usage = recorded(contract_service, signer, "dov", 2)
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (2 * PROMPT, 2 * COMPLETION)
    assert gateway.process.running()


def counters(database: str, user: str) -> dict[str, tuple[int, int]]:
    """The contract's token counters of `user` in their windows now: metric: (used, reserved)."""
    with psycopg.connect(database, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT metric, used, reserved FROM counters WHERE scope = %s"
            " AND metric LIKE 'tokens/%%' AND metric <> 'tokens/minute'",
            [f"user:{user}"],
        ).fetchall()
    return {metric: (used, reserved) for metric, used, reserved in rows}


def lease_remainders(database: str, user: str, metric: str) -> int:
    """What `user`'s leases of `metric` were granted and no usage record settled: what the
    contract charges when they expire unrenewed."""
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(granted - settled), 0) FROM leases"
            " WHERE scope = %s AND metric = %s",
            [f"user:{user}", metric],
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_request_cut_off_by_a_killed_gateway_is_charged_with_its_lease(
    servers: None,
    gateway_kube: str,
    contract_with_database: Callable[..., tuple[RunningService, str]],
    start_gateway: Callable[..., RunningService],
    gateway_database: str,
    signer: TokenSigner,
    fake: FakeServer,
) -> None:
    # Leases expire after 3 s here (the contract looks for expired ones as often).
    contract, database = contract_with_database(CONTRACT_LEASE_SECONDS="3")
    put_contract(contract.url, signer, "user", "gus", token_budget=100_000)
    fake.reset()
    gateway = start_gateway(
        GATEWAY_KUBECONFIG=gateway_kube,
        GATEWAY_CONTRACT_URL=contract.url,
        GATEWAY_USAGE_FLUSH_SECONDS="0.2",
    )
    chat(gateway, signer, "gus", model="acct-words", max_tokens=8)  # routed, and counted
    recorded(contract, signer, "gus", 1)
    before = PROMPT + COMPLETION  # the first request's, settled
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        request = http.build_request(
            "POST",
            "/v1/chat/completions",
            json={"model": "acct-slow", "messages": QUESTION, "stream": True, "max_tokens": 900},
            headers={"Authorization": f"Bearer {signer.sign('gus', teams=['nlp'])}"},
        )
        stream = http.send(request, stream=True)
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert '" 0"' in next(line for line in lines if line)
        # Its 900 tokens are held in the gateway's lease, which the contract reserved
        # whole: what the gateway holds (taken or not) is reserved at the contract.
        used, held = counters(database, "gus")["tokens/month"]
        assert used == before and held >= 900
        # The gateway dies mid-stream: SIGKILL, no usage record is ever written, no
        # lease given back.
        pid = gateway.process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(httpx.HTTPError):
            for _ in lines:
                pass
        stream.close()
    assert not outbox(gateway_database)

    def charged() -> dict[str, tuple[int, int]] | None:
        now = counters(database, "gus")
        return now if now and all(reserved == 0 for _, reserved in now.values()) else None

    # The lease expired unrenewed: all it held is used now, the 900 tokens of the request
    # cut off among them (the rest of the lease is lost for this month's window).
    after = wait_for(charged, timeout=60, what="gus's lease to expire")
    # What its leases held when it died: at least what was read above, more where a
    # refill ahead (asked for in the background as the stream took its 900) was granted
    # between that read and the kill.
    unsettled = lease_remainders(database, "gus", "tokens/month")
    assert unsettled >= held
    assert after == {"tokens/month": (before + unsettled, 0)}
    # The usage report counts what was answered: the cut-off request has no record.
    usage = usage_of(contract, signer, "gus")
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (
        1,
        PROMPT,
        COMPLETION,
    )
