"""Holding requests for an autoscaled model that does not serve, through the gateway's
real routes, proxy, scaler and holder, in this process behind a real HTTP server
(uvicorn: streams and disconnects as a client sees them), with the zero-latency OpenAI
stub as the model server. Most tests fill the route table by hand, as discovery would:
the server's status as the operator writes it. The last ones run discovery and the load
report against the real control plane (the gateway's own service account), the status
patched by hand as the operator would, and read the replica's Lease back. The server's
endpoint is always put in the table by hand, on loopback (EndpointSlices cannot hold
127.x addresses)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from kubernetes import config as k8s_config
from pydantic import SecretStr

from modelserve.common.load_reports import LOAD_LABEL, LoadReport, lease_name, report_from_lease
from modelserve.common.modelserve import OWNER_LABEL
from modelserve.common.tokens import TokenSettings, TokenSigner, TokenVerifier
from modelserve.gateway.accounting import Decision
from modelserve.gateway.arena.lanes import Kind, Lane, LaneEvent
from modelserve.gateway.balancing import Endpoint
from modelserve.gateway.discovery import Discovery
from modelserve.gateway.dispatch import Dispatcher
from modelserve.gateway.endpoints import ServiceSlice
from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.loading.holding import Holder
from modelserve.gateway.loading.reporter import LoadReporter
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.openai_errors import install_openai_errors
from modelserve.gateway.proxy import Proxy
from modelserve.gateway.proxy_requests import CHAT as CHAT_OPERATION
from modelserve.gateway.routes import health, openai, server_openai
from modelserve.gateway.routing import RouteTable, Target, target_from_body
from modelserve.gateway.scaled import Scaler
from modelserve.gateway.upstream import UpstreamClient
from modelserve.testbed import openai_stub
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.processes import free_port

TOKENS = TokenSettings(secret=SecretStr("holding-tests-secret-of-at-least-32-bytes"))
MODEL = "qwen"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
ASLEEP = {"phase": "Sleeping", "desiredReplicas": 0}


def server_body(
    status: dict[str, Any],
    *,
    autoscaled: bool = True,
    namespace: str = "team-a",
    scaling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"runtime": "llamacpp", "model": {"servedName": MODEL}}
    if autoscaled:
        spec["autoscaling"] = {"minReplicas": 0, "maxReplicas": 1}
    if scaling is not None:
        spec["scaling"] = scaling
    return {
        "metadata": {
            "name": "qwen",
            "namespace": namespace,
            "uid": SERVER_ID,
            "labels": {OWNER_LABEL: "alice"},
            "creationTimestamp": "2025-01-02T03:04:05Z",
        },
        "spec": spec,
        "status": status,
    }


SERVER_ID = str(uuid.uuid4())


@dataclasses.dataclass
class Gateway:
    client: httpx.AsyncClient
    table: RouteTable
    book: LoadBook
    metrics: GatewayMetrics
    upstream_port: int
    proxy: Proxy

    def status(self, status: dict[str, Any], **options: Any) -> Target:
        """The server's status as the operator would write it, seen by discovery."""
        target = target_from_body(server_body(status, **options))
        self.table.upsert(target)
        return target

    def wake(self) -> None:
        """A ready endpoint of the server (its pod started), and its status Ready."""
        self.status({"phase": "Ready", "desiredReplicas": 1})
        endpoint = Endpoint(f"http://127.0.0.1:{self.upstream_port}/v1", pod="qwen-0")
        self.table.endpoints.upsert(ServiceSlice("team-a", "qwen-abcde", "qwen", (endpoint,)))

    def held(self) -> int:
        return self.book.holding(SERVER_ID)

    def outcomes(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "modelserve_gateway_holds_total", {"model": MODEL, "outcome": outcome}
        )
        return value or 0.0


async def until(check: Callable[[], Any], what: str) -> Any:
    for _ in range(500):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def stub() -> contextlib.AbstractAsyncContextManager[int]:
    """The zero-latency OpenAI stub (`modelserve.testbed.openai_stub`) on loopback."""
    return openai_stub.serving(4)


def build_app(
    table: RouteTable,
    upstream: UpstreamClient,
    book: LoadBook | None = None,
    metrics: GatewayMetrics | None = None,
    accounting: Any = None,
    **hold: Any,
) -> FastAPI:
    metrics = metrics or GatewayMetrics()
    book = LoadBook() if book is None else book
    dispatcher = Dispatcher(table, upstream, metrics, book)
    holder = Holder(
        table,
        book,
        metrics,
        queue=hold.get("queue", 100),
        timeout=hold.get("timeout", 30.0),
        keepalive=hold.get("keepalive", 0.05),
    )
    scaler = Scaler(
        table,
        dispatcher,
        metrics,
        accounting,
        max_concurrency=4,
        keepalive_seconds=0.05,
        holder=holder,
    )
    proxy = Proxy(
        table,
        dispatcher,
        metrics,
        max_body_bytes=1 << 20,
        inject_stream_usage=True,
        accounting=accounting,
        scaler=scaler,
        holder=holder,
    )
    app = FastAPI()
    for router in (health.router, openai.router, server_openai.router):
        app.include_router(router)
    install_openai_errors(app)
    app.state.proxy, app.state.routes, app.state.metrics = proxy, table, metrics
    app.state.contracts = None
    app.state.gpus = None  # no cluster: /health's gpu summary says so
    app.state.verifier = TokenVerifier.from_settings(TOKENS)
    return app


@contextlib.asynccontextmanager
async def serving_app(app: FastAPI) -> AsyncIterator[str]:
    """`app` behind uvicorn on loopback; its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def gateway(
    table: RouteTable | None = None,
    book: LoadBook | None = None,
    accounting: Any = None,
    **hold: Any,
) -> AsyncIterator[Gateway]:
    table = RouteTable() if table is None else table
    table.synced = True
    upstream = UpstreamClient(connections=8, connect_timeout=2, read_timeout=5)
    app = build_app(table, upstream, book, accounting=accounting, **hold)
    token = TokenSigner.from_settings(TOKENS).sign("alice")
    try:
        async with stub() as port, serving_app(app) as url:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
                proxy = app.state.proxy
                yield Gateway(client, table, proxy.dispatcher.book, proxy.metrics, port, proxy)
    finally:
        await upstream.close()


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


# --- Tests -------------------------------------------------------------------------------


def test_a_held_request_is_forwarded_once_its_model_has_a_ready_endpoint() -> None:
    async def scenario() -> None:
        async with gateway() as gw:
            gw.status(ASLEEP)
            for path, body in (
                ("/v1/chat/completions", CHAT),
                (f"/{SERVER_ID}/v1/completions", {"prompt": "Hi"}),
            ):
                request = asyncio.create_task(gw.client.post(path, json=body))
                await until(lambda: gw.held() == 1, "the request to be held")
                assert not request.done()
                gw.wake()
                answer = await request
                assert answer.status_code == 200, answer.text
                assert gw.held() == 0
                gw.status(ASLEEP)
                gw.table.endpoints.remove("team-a", "qwen-abcde")
            assert gw.outcomes("forwarded") == 2
            assert gw.book.load(SERVER_ID).last_used > 0
            # Both went on from the change that made the model serve: the gateway's own
            # part of the hold is measured (bench/activation.py reads it).
            released = gw.metrics.registry.get_sample_value(
                "modelserve_gateway_hold_release_seconds_count"
            )
            assert released == 2

    asyncio.run(scenario())


def test_an_arena_side_for_a_sleeping_model_says_loading_then_answers_once_it_wakes() -> None:
    """The arena's sides are the proxy's own responses, run in the gateway (`arena.lanes`):
    one for a sleeping model is held like a client's request, and says so."""

    async def scenario() -> None:
        async with gateway() as gw:
            target = gw.status(ASLEEP)
            claims = await TokenVerifier.from_settings(TOKENS).verify(
                TokenSigner.from_settings(TOKENS).sign("alice")
            )
            body = {**CHAT, "stream": True, "max_tokens": 4}
            response = await gw.proxy.respond(claims, CHAT_OPERATION, target, body, {})
            events: asyncio.Queue[LaneEvent] = asyncio.Queue()
            lane = Lane("b", response, events, asyncio.Event())
            run = asyncio.create_task(lane.run())
            first = await asyncio.wait_for(events.get(), 10)
            assert (first.side, first.kind) == ("b", Kind.LOADING)
            await until(lambda: gw.held() == 1, "the side to be held")
            gw.wake()
            await asyncio.wait_for(run, 10)
            kinds = []
            while not events.empty():
                kinds.append(events.get_nowait().kind)
            assert Kind.DELTA in kinds and kinds[-1] is Kind.DONE, kinds
            assert lane.text and gw.outcomes("forwarded") == 1

    asyncio.run(scenario())


def test_a_full_queue_answers_429_with_retry_after() -> None:
    async def scenario() -> None:
        async with gateway(queue=1) as gw:
            gw.status(ASLEEP)
            first = asyncio.create_task(gw.client.post("/v1/chat/completions", json=CHAT))
            await until(lambda: gw.held() == 1, "the first request to be held")
            refused = await gw.client.post("/v1/chat/completions", json=CHAT)
            assert refused.status_code == 429
            assert refused.headers["retry-after"]
            assert error_of(refused)["code"] == "model_loading_queue_full"
            gw.wake()
            assert (await first).status_code == 200
            assert gw.outcomes("queue_full") == 1

    asyncio.run(scenario())


def test_a_hold_that_times_out_is_503_saying_why() -> None:
    async def scenario() -> None:
        async with gateway(timeout=0.3) as gw:
            condition = {
                "type": "Scheduled",
                "status": "False",
                "reason": "WaitingForEviction",
                "message": "llama is busy on the L4",
            }
            gw.status({"phase": "Pending", "desiredReplicas": 1, "conditions": [condition]})
            answer = await gw.client.post("/v1/chat/completions", json=CHAT)
            assert answer.status_code == 503
            assert answer.headers["retry-after"]
            error = error_of(answer)
            assert error["code"] == "model_loading_timeout"
            assert "still loading" in error["message"]
            assert "llama is busy on the L4" in error["message"]
            assert gw.held() == 0 and gw.outcomes("timeout") == 1

    asyncio.run(scenario())


def test_no_evictable_model_fails_held_requests_at_once() -> None:
    condition = {
        "type": "Scheduled",
        "status": "False",
        "reason": "NoEvictableModel",
        "message": "every model on the L4 is pinned",
    }
    cannot = {"phase": "Pending", "desiredReplicas": 1, "conditions": [condition]}

    async def scenario() -> None:
        async with gateway() as gw:
            # Held first, then the operator finds no model to put to sleep for it.
            gw.status(ASLEEP)
            held = asyncio.create_task(gw.client.post("/v1/chat/completions", json=CHAT))
            await until(lambda: gw.held() == 1, "the request to be held")
            gw.status(cannot)
            answer = await held
            assert answer.status_code == 503
            assert error_of(answer)["code"] == "model_cannot_be_placed"
            assert "every model on the L4 is pinned" in error_of(answer)["message"]
            # A new request while that holds: at once.
            again = await gw.client.post("/v1/chat/completions", json=CHAT)
            assert again.status_code == 503
            assert error_of(again)["code"] == "model_cannot_be_placed"
            assert gw.held() == 0 and gw.outcomes("failed") == 2

    asyncio.run(scenario())


def test_a_client_that_leaves_is_dropped_from_the_queue() -> None:
    async def scenario() -> None:
        async with gateway() as gw:
            gw.status(ASLEEP)
            request = asyncio.create_task(gw.client.post("/v1/chat/completions", json=CHAT))
            await until(lambda: gw.held() == 1, "the request to be held")
            request.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await request
            await until(lambda: gw.held() == 0, "the held count to go back to 0")
            await until(lambda: gw.outcomes("client_left") == 1, "the hold counted as left")

    asyncio.run(scenario())


async def read_events(response: httpx.Response, into: list[str]) -> None:
    async for line in response.aiter_lines():
        if line:
            into.append(line)


def test_a_held_stream_gets_its_head_and_keepalives_then_the_stream() -> None:
    async def scenario() -> None:
        async with gateway() as gw:
            gw.status(ASLEEP)
            body = {**CHAT, "stream": True}
            async with gw.client.stream("POST", "/v1/chat/completions", json=body) as response:
                # The head came while the model sleeps.
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                lines: list[str] = []
                reading = asyncio.create_task(read_events(response, lines))
                await until(lambda: any(line.startswith(":") for line in lines), "a keep-alive")
                gw.wake()
                await reading
            data = [line for line in lines if line.startswith("data: ")]
            assert data[-1] == "data: [DONE]"
            assert any("tok" in line for line in data)

    asyncio.run(scenario())


def test_a_held_stream_that_fails_ends_with_an_error_event() -> None:
    async def scenario() -> None:
        async with gateway(timeout=0.3) as gw:
            gw.status(ASLEEP)
            body = {**CHAT, "stream": True}
            async with gw.client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                lines: list[str] = []
                await read_events(response, lines)
            event = json.loads(lines[-1].removeprefix("data: "))
            assert event["error"]["code"] == "model_loading_timeout"

    asyncio.run(scenario())


def test_a_draining_model_holds_new_requests_until_the_drain_is_called_off() -> None:
    async def scenario() -> None:
        async with gateway() as gw:
            gw.wake()
            assert (await gw.client.post("/v1/chat/completions", json=CHAT)).status_code == 200
            gw.status({"phase": "Ready", "desiredReplicas": 1, "drain": {"token": "t-1"}})
            request = asyncio.create_task(gw.client.post("/v1/chat/completions", json=CHAT))
            await until(lambda: gw.held() == 1, "the request to be held")
            models = (await gw.client.get("/v1/models")).json()["data"]
            assert models[0]["state"] == "sleeping"
            gw.status({"phase": "Ready", "desiredReplicas": 1})  # a held request cancels it
            assert (await request).status_code == 200

    asyncio.run(scenario())


def test_a_server_without_autoscaling_is_refused_as_before() -> None:
    async def scenario() -> None:
        async with gateway() as gw:
            gw.status({"phase": "Deploying"}, autoscaled=False)
            answer = await gw.client.post("/v1/chat/completions", json=CHAT)
            assert answer.status_code == 503
            assert error_of(answer)["code"] == "model_not_ready"
            assert gw.held() == 0

    asyncio.run(scenario())


def test_a_scaled_request_is_held_too() -> None:
    async def scenario() -> None:
        async with gateway() as gw:
            gw.status(ASLEEP)
            body = {**CHAT, "budget": 2, "algorithm": "self-consistency"}
            request = asyncio.create_task(gw.client.post("/v1/chat/completions", json=body))
            await until(lambda: gw.held() == 1, "the scaled request to be held")
            gw.wake()
            answer = await request
            assert answer.status_code == 200, answer.text
            assert gw.outcomes("forwarded") == 1

    asyncio.run(scenario())


def test_models_and_health_say_who_is_loaded() -> None:
    async def scenario() -> None:
        async with gateway(RouteTable(platform_namespaces=["modelserve"])) as gw:
            gw.status(ASLEEP, namespace="modelserve")
            models = (await gw.client.get("/v1/models")).json()["data"]
            assert [(m["id"], m["state"], m["last_used"]) for m in models] == [
                (MODEL, "sleeping", None)
            ]
            async with httpx.AsyncClient(base_url=gw.client.base_url) as nobody:
                anonymous = (await nobody.get("/health")).json()
            assert anonymous["status"] == "ok"
            assert (anonymous["loaded_models"], anonymous["available_models"]) == ([], [MODEL])
            one = (await gw.client.get(f"/v1/models/{MODEL}")).json()
            assert one["state"] == "sleeping"

    asyncio.run(scenario())


def test_health_without_a_token_never_names_a_tenants_model() -> None:
    async def scenario() -> None:
        async with gateway(RouteTable(platform_namespaces=["modelserve"])) as gw:
            gw.wake()  # alice's, in team-a
            async with httpx.AsyncClient(base_url=gw.client.base_url) as nobody:
                anonymous = (await nobody.get("/health")).json()
            assert (anonymous["loaded_models"], anonymous["available_models"]) == ([], [])
            mine = (await gw.client.get("/health")).json()
            assert mine["loaded_models"] == [MODEL]

    asyncio.run(scenario())


class DrainDuringDecision:
    """A contract service that allows everything, and while it decides (an await the
    request makes after its lookup) the operator's drain token arrives."""

    def __init__(self, gw: Callable[[], Gateway]) -> None:
        self._gw = gw
        self.settled = 0
        # The proxy asks `Accounting.ledger` to decide: this one decides itself.
        self.ledger = self

    async def decide(self, claims: Any, model: str, tokens: Any, budget: Any, **_: Any) -> Decision:
        self._gw().status({"phase": "Ready", "desiredReplicas": 1, "drain": {"token": "t-9"}})
        await asyncio.sleep(0)
        return Decision(True, "", "")

    def settle(self, *args: Any) -> None:
        self.settled += 1


@pytest.mark.parametrize("scaled", [False, True])
def test_a_drain_that_comes_while_the_contract_decides_holds_the_request(scaled: bool) -> None:
    """Held or not is decided right before the request goes upstream: one that was
    routed to a serving model, then saw a drain come, is held (and counted held in the
    report), never sent to a model the operator is about to scale to 0."""
    found: list[Gateway] = []
    accounting = DrainDuringDecision(lambda: found[0])

    async def scenario() -> None:
        async with gateway(accounting=accounting) as gw:
            found.append(gw)
            gw.wake()
            body = {**CHAT, "budget": 2, "algorithm": "self-consistency"} if scaled else CHAT
            request = asyncio.create_task(gw.client.post("/v1/chat/completions", json=body))
            await until(lambda: gw.held() == 1, "the request to be held")
            assert gw.book.load(SERVER_ID).in_flight == 0  # nothing went upstream
            assert not request.done()
            gw.status({"phase": "Ready", "desiredReplicas": 1})  # the drain is called off
            answer = await request
            assert answer.status_code == 200, answer.text

    asyncio.run(scenario())


def test_a_model_scaled_to_0_whose_endpoints_linger_is_held_and_woken() -> None:
    """The operator scales to 0 and clears the drain at once; the EndpointSlice may
    still show the pods ready for a moment. A request then is held (it wakes the
    model), not sent to a pod that is going away."""

    async def scenario() -> None:
        async with gateway() as gw:
            gw.wake()
            gw.status({"phase": "Ready", "desiredReplicas": 0})  # the endpoint is still there
            request = asyncio.create_task(gw.client.post("/v1/chat/completions", json=CHAT))
            await until(lambda: gw.held() == 1, "the request to be held")
            assert gw.book.load(SERVER_ID).in_flight == 0
            models = (await gw.client.get("/v1/models")).json()["data"]
            assert models[0]["state"] == "loading"  # asleep, with a request held
            gw.wake()
            assert (await request).status_code == 200

    asyncio.run(scenario())


def test_a_scaled_request_keeps_its_server_busy_between_its_calls() -> None:
    """Best-of-N with a judge on the model itself: candidates, then their scores, two
    rounds of calls. The report never shows the server idle (in flight 0) until the
    request ends, so no drain can complete between the rounds; nor does it count the
    request on top of its calls."""

    async def scenario() -> None:
        async with gateway() as gw:
            gw.wake()
            seen: list[int] = []
            gw.book.listen(lambda server, _: seen.append(gw.book.load(server).in_flight))
            body = {**CHAT, "budget": 2, "algorithm": "best-of-n"}
            gw.status(
                {"phase": "Ready", "desiredReplicas": 1},
                scaling={"reward": "judge"},
            )
            answer = await gw.client.post("/v1/chat/completions", json=body)
            judged_by_the_stub(answer)
            assert seen[-1] == 0 and 0 not in seen[:-1], seen
            assert max(seen) == 2  # the calls, not the calls and the run
            assert gw.book.load(SERVER_ID).in_flight == 0

    asyncio.run(scenario())


def judged_by_the_stub(answer: httpx.Response) -> None:
    """The stub's answers carry no log-probabilities, so a judge's score fails the
    request, after both rounds of calls (candidates, then the judge's): what these
    tests look at."""
    assert answer.status_code == 502, answer.text
    assert "no log-probabilities" in error_of(answer)["message"]


JUDGE_ID = str(uuid.uuid4())


def judge_body(status: dict[str, Any]) -> dict[str, Any]:
    """A platform reward model that may sleep, served as "judge"."""
    return {
        "metadata": {
            "name": "judge",
            "namespace": "modelserve",
            "uid": JUDGE_ID,
            "creationTimestamp": "2025-01-02T03:04:05Z",
        },
        "spec": {
            "runtime": "llamacpp",
            "model": {"servedName": "judge"},
            "autoscaling": {"minReplicas": 0, "maxReplicas": 1},
        },
        "status": status,
    }


def test_a_sleeping_reward_model_is_held_and_woken_for_a_scaled_request() -> None:
    async def scenario() -> None:
        async with gateway(RouteTable(platform_namespaces=["modelserve"])) as gw:
            gw.wake()
            gw.status(
                {"phase": "Ready", "desiredReplicas": 1},
                scaling={"reward": "judge", "rewardModel": "judge"},
            )
            gw.table.upsert(target_from_body(judge_body(ASLEEP)))
            body = {**CHAT, "budget": 2, "algorithm": "best-of-n"}
            request = asyncio.create_task(gw.client.post("/v1/chat/completions", json=body))
            await until(lambda: gw.book.holding(JUDGE_ID) == 1, "the reward model held")
            # The model itself serves: it is not held, and nothing went upstream yet.
            assert gw.book.load(SERVER_ID).in_flight == 0 and gw.held() == 0
            gw.table.upsert(target_from_body(judge_body({"phase": "Ready", "desiredReplicas": 1})))
            endpoint = Endpoint(f"http://127.0.0.1:{gw.upstream_port}/v1", pod="judge-0")
            slice_ = ServiceSlice("modelserve", "judge-abcde", "judge", (endpoint,))
            gw.table.endpoints.upsert(slice_)
            judged_by_the_stub(await request)
            assert gw.book.load(JUDGE_ID).in_flight == 0 and gw.book.holding(JUDGE_ID) == 0
            assert gw.book.load(JUDGE_ID).last_used > 0

    asyncio.run(scenario())


# --- Against the real control plane: discovery, and the load report's Lease ---------------


def apply_autoscaled(kube: KubeCluster, namespace: str) -> str:
    """A ModelServe that may sleep, asleep; its UID."""
    body = {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": "qwen", "namespace": namespace, "labels": {OWNER_LABEL: "alice"}},
        "spec": {
            "runtime": "llamacpp",
            "model": {"uri": "s3://platform/qwen.gguf", "format": "gguf", "servedName": MODEL},
            "autoscaling": {"minReplicas": 0, "maxReplicas": 1, "idleTimeoutSeconds": 60},
        },
    }
    kube.kubectl("apply", "-f", "-", stdin=json.dumps(body))
    patch_status(kube, namespace, ASLEEP)
    uid: str = kube.get_json("ms", "qwen", "-n", namespace)["metadata"]["uid"]
    return uid


def patch_status(kube: KubeCluster, namespace: str, status: dict[str, Any]) -> None:
    patch = json.dumps({"status": status})
    kube.kubectl(
        "patch", "ms/qwen", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch
    )  # fmt: skip


def read_report(kube: KubeCluster, namespace: str, replica: str) -> LoadReport | None:
    found = kube.kubectl(
        "get", "lease", lease_name(replica), "-n", namespace, "-o", "json", "--ignore-not-found"
    )  # fmt: skip
    return report_from_lease(json.loads(found)) if found.strip() else None


@pytest.mark.kube
def test_the_lease_reports_held_requests_and_acknowledges_a_drain(
    crds: KubeCluster, namespace: str, gateway_kube: str
) -> None:
    uid = apply_autoscaled(crds, namespace)
    replica = f"test-{uuid.uuid4().hex[:6]}"

    async def report() -> LoadReport | None:
        return await asyncio.to_thread(read_report, crds, namespace, replica)

    async def until_reported(check: Callable[[LoadReport], bool], what: str) -> LoadReport:
        for _ in range(300):
            found = await report()
            if found is not None and check(found):
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for the Lease to show {what}")

    async def scenario() -> None:
        api = k8s_config.new_client_from_config(config_file=gateway_kube)
        table, book, metrics = RouteTable(), LoadBook(), GatewayMetrics()
        discovery = Discovery(api, table, namespaces=[namespace], resync_seconds=300)
        reporter = LoadReporter(
            api, table, book, metrics, replica=replica, namespace=namespace,
            period=30, duration=60,
        )  # fmt: skip
        await discovery.start()
        await reporter.start()
        try:
            await until(lambda: table.synced and table.server(uid), "discovery")
            async with gateway(table, book) as gw:
                await follow(gw)
        finally:
            await discovery.close()
            await reporter.close()
            api.close()
        assert await report() is None  # deleted at shutdown

    async def follow(gw: Gateway) -> None:
        # A request for the sleeping model is held, and the Lease says so at once (the
        # period is 30 s: only the first held request can have written it).
        request = asyncio.create_task(gw.client.post("/v1/chat/completions", json=CHAT))
        found = await until_reported(lambda r: uid in r.servers, "a held request")
        assert found.servers[uid].held == 1 and found.servers[uid].last_used > 0
        assert found.replica == replica and found.draining == {}
        # The operator wakes it: Ready, a ready endpoint. The request goes on.
        await asyncio.to_thread(
            patch_status, crds, namespace, {"phase": "Ready", "desiredReplicas": 1}
        )
        await until(lambda: (t := gw.table.server(uid)) and t.phase == "Ready", "Ready")
        endpoint = Endpoint(f"http://127.0.0.1:{gw.upstream_port}/v1", pod="qwen-0")
        gw.table.endpoints.upsert(ServiceSlice(namespace, "qwen-abcde", "qwen", (endpoint,)))
        answer = await request
        assert answer.status_code == 200, answer.text

        # A drain: acknowledged at once, and new requests are held (and reported).
        drain = {"token": "drain-1", "reason": "Idle", "since": "2025-01-02T03:04:05Z"}
        await asyncio.to_thread(patch_status, crds, namespace, {"drain": drain})
        await until_reported(lambda r: r.draining == {uid: "drain-1"}, "the drain acknowledged")
        held = asyncio.create_task(gw.client.post("/v1/chat/completions", json=CHAT))
        await until_reported(lambda r: r.servers[uid].held == 1, "the request held while draining")
        # The operator calls the drain off (a replica reported a request): it goes on.
        await asyncio.to_thread(patch_status, crds, namespace, {"drain": None})
        assert (await held).status_code == 200
        await until_reported(lambda r: r.draining == {}, "no drain any more")

    asyncio.run(scenario())


def lease(name: str, renewed: float, *, labelled: bool = True) -> dict[str, Any]:
    stamp = dt.datetime.fromtimestamp(renewed, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "labels": {LOAD_LABEL: "true"} if labelled else {}},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 10, "renewTime": stamp},
    }


@pytest.mark.kube
def test_the_leases_of_dead_replicas_are_swept(
    crds: KubeCluster, namespace: str, gateway_kube: str
) -> None:
    """A replica killed with SIGKILL never deletes its Lease; the live ones delete those
    not renewed for a long time (the gateway's own account may list them)."""
    now = time.time()
    leases = [
        lease("modelserve-gateway-dead", now - 3600),
        lease("modelserve-gateway-alive", now - 5),
        lease("not-a-load-report", now - 3600, labelled=False),
    ]
    for body in leases:
        crds.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(body))
    replica = f"test-{uuid.uuid4().hex[:6]}"

    async def scenario() -> list[str]:
        api = k8s_config.new_client_from_config(config_file=gateway_kube)
        reporter = LoadReporter(
            api, RouteTable(), LoadBook(), GatewayMetrics(), replica=replica,
            namespace=namespace, period=30, duration=10,
        )  # fmt: skip
        try:
            assert reporter.stale_seconds == 600  # 10 lease durations, at least 10 minutes
            assert await reporter.write()
            return await reporter.sweep()
        finally:
            await reporter.close()
            api.close()

    assert asyncio.run(scenario()) == ["modelserve-gateway-dead"]
    left = crds.get_json("leases", "-n", namespace)["items"]
    assert sorted(item["metadata"]["name"] for item in left) == [
        "modelserve-gateway-alive",
        "not-a-load-report",
    ]
