"""Endpoint choice and retries at the forwarding layer, and a server's own paths
(`/{server_id}/v1/…`): the gateway's real proxy, routes and dispatcher, in this process,
with a route table whose server has endpoints on loopback (EndpointSlices cannot hold
127.x addresses, so these are put in the table directly): a port where nothing listens,
the zero-latency OpenAI stub, and servers of this test's own that stay silent, break off
their answer or record what they were sent.

(The same paths through the gateway as a process, with the contract service and
SmolLM2: test_server_paths.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from modelserve.common.modelserve import Runtime
from modelserve.common.tokens import TokenSettings, TokenSigner, TokenVerifier
from modelserve.gateway.balancing import Endpoint
from modelserve.gateway.dispatch import Dispatcher
from modelserve.gateway.endpoints import ServiceSlice
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.openai_errors import install_openai_errors
from modelserve.gateway.proxy import Proxy
from modelserve.gateway.routes import openai, server_openai
from modelserve.gateway.routing import RouteTable, Target
from modelserve.gateway.scaled import poster
from modelserve.gateway.upstream import UpstreamClient
from modelserve.testbed import openai_stub
from modelserve.testbed.processes import free_port

TOKENS = TokenSettings(secret=SecretStr("dispatch-tests-secret-of-at-least-32-bytes"))
SERVER_ID = str(uuid.uuid4())
MODEL = "qwen"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
READ_TIMEOUT = 1.0


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


def target() -> Target:
    return Target(
        server_id=SERVER_ID,
        namespace="team-a",
        name="qwen",
        served_name=MODEL,
        endpoint="http://qwen.team-a.svc.cluster.local:8080/v1",  # never dialled
        ready=True,
        phase="Ready",
        message="",
        owner="alice",
        runtime=Runtime.LLAMACPP,
    )


@contextlib.asynccontextmanager
async def gateway(
    *ports: int, inject_stream_usage: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, RouteTable, GatewayMetrics]]:
    """The proxy's routes over a table where `qwen`'s Service has an endpoint per port."""
    table = RouteTable()
    table.synced = True
    table.upsert(target())
    endpoints = tuple(Endpoint(url(port), pod=f"qwen-{n}") for n, port in enumerate(ports))
    table.endpoints.upsert(ServiceSlice("team-a", "qwen-abcde", "qwen", endpoints))
    metrics = GatewayMetrics()
    upstream = UpstreamClient(connections=8, connect_timeout=2, read_timeout=READ_TIMEOUT)
    proxy = Proxy(
        table,
        Dispatcher(table, upstream, metrics),
        metrics,
        max_body_bytes=1 << 20,
        inject_stream_usage=inject_stream_usage,
    )
    app = FastAPI()
    app.include_router(openai.router)
    app.include_router(server_openai.router)
    install_openai_errors(app)
    app.state.proxy, app.state.routes, app.state.metrics = proxy, table, metrics
    app.state.verifier = TokenVerifier.from_settings(TOKENS)
    # No contract service: a server's own /models lists its adapters unfiltered.
    app.state.contracts = None
    token = sign("alice")
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", headers=headers
        ) as client:
            yield client, table, metrics
    finally:
        await upstream.close()


@contextlib.asynccontextmanager
async def serving(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A raw TCP server on loopback, for answers no OpenAI server gives on demand."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def stub() -> contextlib.AbstractAsyncContextManager[int]:
    """The zero-latency OpenAI stub (`modelserve.testbed.openai_stub`) on loopback."""
    return openai_stub.serving(4)


def sign(subject: str) -> str:
    return TokenSigner.from_settings(TOKENS).sign(subject)


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, Any]]:
    """The path and JSON body of one request a server of this test reads."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body: dict[str, Any] = json.loads(await reader.readexactly(length))
    return head.split(b" ")[1].decode(), body


def answer_with(body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return head % len(body) + body


def retries(metrics: GatewayMetrics) -> float:
    found = metrics.registry.get_sample_value(
        "modelserve_gateway_upstream_retries_total", {"model": MODEL}
    )
    return found or 0.0


def test_a_refused_connection_is_retried_on_the_other_endpoint() -> None:
    async def scenario() -> None:
        closed = free_port()  # nothing listens: connections are refused
        async with stub() as answering, gateway(closed, answering) as (client, table, metrics):
            statuses = []
            for path in ("/v1/chat/completions", f"/{SERVER_ID}/v1/chat/completions") * 3:
                answer = await client.post(path, json=CHAT)
                statuses.append(answer.status_code)
                assert answer.json()["choices"][0]["message"]["content"] == "hello"
            streamed = await client.post(
                "/v1/completions", json={**CHAT, "prompt": "Hi", "stream": True}
            )
            assert streamed.status_code == 200
            assert streamed.text.endswith("data: [DONE]\n\n")
            assert statuses == [200] * 6
            # Ties go round-robin, so the refusing endpoint was chosen first about half the
            # time; each time the request went on to the other one.
            assert retries(metrics) >= 2
            assert table.endpoints.load(table.endpoints_of(target())) == 0

    asyncio.run(scenario())


def test_a_connection_closed_before_the_answer_is_retried_on_the_other_endpoint() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.close()  # the server dies with the request: not a byte of an answer

    async def scenario() -> None:
        async with (
            serving(hang_up) as port,
            stub() as answering,
            gateway(port, answering) as (
                client,
                table,
                metrics,
            ),
        ):
            busy = Endpoint(url(answering))
            table.endpoints.acquire(busy)  # so that the policy picks the other one first
            answer = await client.post("/v1/chat/completions", json=CHAT)
            assert answer.status_code == 200, answer.text
            # A close without a word is first taken for a kept-alive connection the server
            # dropped (the same endpoint once more, on a new connection), then the endpoint
            # is left for the other.
            assert retries(metrics) == 2
            table.endpoints.release(busy)

    asyncio.run(scenario())


def test_a_dropped_kept_alive_connection_is_retried_on_the_same_endpoint() -> None:
    """One endpoint only, which hangs up on the first request without a word, as a server
    does when it drops a kept-alive connection: the request is answered all the same."""
    calls = 0

    async def once_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        await reader.read(65536)
        if calls == 1:
            writer.close()  # the server closed the connection the pool held
            return
        body = json.dumps({"object": "chat.completion", "choices": []}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with serving(once_then_hang_up) as port, gateway(port) as (client, _, metrics):
            answer = await client.post("/v1/chat/completions", json=CHAT)
            assert answer.status_code == 200, answer.text
            assert retries(metrics) == 1
            assert calls == 2

    asyncio.run(scenario())


def test_each_endpoint_is_tried_once_then_502() -> None:
    async def scenario() -> None:
        async with gateway(free_port(), free_port()) as (client, _, metrics):
            answer = await client.post("/v1/chat/completions", json=CHAT)
            assert answer.status_code == 502
            assert answer.json()["error"]["code"] == "upstream_unreachable"
            assert retries(metrics) == 1

    asyncio.run(scenario())


def test_a_timeout_or_an_answer_broken_off_is_not_retried() -> None:
    received: list[str] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append("silent")
        await reader.read(65536)
        await asyncio.sleep(READ_TIMEOUT * 3)
        writer.close()

    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append("broken")
        await reader.read(65536)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"
        )
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        for handle, status, code in (
            (silent, 504, "upstream_timeout"),
            (broken, 502, "upstream_broken"),
        ):
            async with (
                serving(handle) as port,
                stub() as answering,
                gateway(port, answering) as (client, table, metrics),
            ):
                # Busy the stub, so that the policy picks the other endpoint first.
                busy = Endpoint(url(answering))
                table.endpoints.acquire(busy)
                answer = await client.post("/v1/chat/completions", json=CHAT)
                assert answer.status_code == status, answer.text
                assert answer.json()["error"]["code"] == code
                assert retries(metrics) == 0
                table.endpoints.release(busy)
        assert received == ["silent", "broken"]

    asyncio.run(scenario())


def test_a_server_without_a_ready_endpoint_answers_503() -> None:
    async def scenario() -> None:
        async with gateway(free_port()) as (client, table, _):
            (only,) = table.endpoints_of(target())
            table.endpoints.upsert(
                ServiceSlice("team-a", "qwen-abcde", "qwen", (Endpoint(only.url, ready=False),))
            )
            for path in ("/v1/chat/completions", f"/{SERVER_ID}/v1/chat/completions"):
                answer = await client.post(path, json=CHAT)
                assert answer.status_code == 503
                assert int(answer.headers["retry-after"]) > 0
                error = answer.json()["error"]
                assert error["code"] == "model_not_ready"
                assert "team-a/qwen has no ready endpoint" in error["message"]

    asyncio.run(scenario())


def test_a_request_in_flight_is_not_cut_when_its_endpoint_stops_being_ready() -> None:
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        started.set()
        await finish.wait()
        body = b'{"choices": [{"index": 0, "message": {"content": "late"}}]}'
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with serving(slow) as port, gateway(port) as (client, table, _):
            request = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
            await asyncio.wait_for(started.wait(), 5)
            (only,) = table.endpoints_of(target())
            assert table.endpoints.load([only]) == 1
            # Its pod is terminating: no new request goes there, this one goes on.
            table.endpoints.upsert(
                ServiceSlice("team-a", "qwen-abcde", "qwen", (Endpoint(only.url, ready=False),))
            )
            refused = await client.post("/v1/chat/completions", json=CHAT)
            assert refused.status_code == 503
            finish.set()
            answer = await request
            assert answer.status_code == 200
            assert answer.json()["choices"][0]["message"]["content"] == "late"
            assert table.endpoints.load([only]) == 0

    asyncio.run(scenario())


def test_the_scaled_path_chooses_an_endpoint_per_call_and_retries_alike() -> None:
    async def scenario() -> None:
        closed = free_port()
        async with stub() as answering, gateway(closed, answering) as (_, table, metrics):
            upstream = UpstreamClient(connections=8, connect_timeout=2, read_timeout=READ_TIMEOUT)
            post = poster(Dispatcher(table, upstream, metrics), target())
            try:
                for _ in range(4):
                    answer = await post("/v1/chat/completions", CHAT)
                    assert answer["choices"][0]["message"]["content"] == "hello"
            finally:
                await upstream.close()
            assert retries(metrics) >= 1
            assert table.endpoints.load(table.endpoints_of(target())) == 0

    asyncio.run(scenario())


def test_a_server_s_own_paths_fill_in_its_model_and_check_the_caller() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent.append(await read_request(reader))
        usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        writer.write(answer_with(json.dumps({"choices": [], "usage": usage}).encode()))
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        own = f"/{SERVER_ID}/v1"
        async with serving(recording) as port, gateway(port) as (client, _, metrics):
            # The seeds' bodies: no `model`.
            seed = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0.7}
            assert (await client.post(f"{own}/chat/completions", json=seed)).status_code == 200
            assert sent[-1] == ("/v1/chat/completions", {**seed, "model": MODEL})
            prompt = {"prompt": "Once upon a time", "max_tokens": 100}
            assert (await client.post(f"{own}/completions", json=prompt)).status_code == 200
            assert sent[-1] == ("/v1/completions", {**prompt, "model": MODEL})
            named = {"model": MODEL, "input": "hello"}
            assert (await client.post(f"{own}/embeddings", json=named)).status_code == 200
            assert sent[-1] == ("/v1/embeddings", named)
            # Uppercase is the same UUID.
            upper = f"/{SERVER_ID.upper()}/v1/chat/completions"
            assert (await client.post(upper, json=seed)).status_code == 200
            route = "/{server_id}/v1/chat/completions"
            counted = metrics.registry.get_sample_value(
                "modelserve_gateway_requests_total",
                {"model": MODEL, "route": route, "status": "200"},
            )
            assert counted == 2

            models = await client.get(f"{own}/models")
            assert [m["id"] for m in models.json()["data"]] == [MODEL]

            count = len(sent)
            bob = {"Authorization": f"Bearer {sign('bob')}"}
            chat = f"{own}/chat/completions"
            refusals: list[tuple[str, str, dict[str, Any], int, str, str]] = [
                ("POST", chat, {"json": {**seed, "model": "llama"}}, 400, "model_mismatch",
                 "invalid_request_error"),
                ("POST", f"/{uuid.uuid4()}/v1/chat/completions", {"json": seed}, 404,
                 "server_not_found", "invalid_request_error"),
                ("POST", chat, {"json": seed, "headers": bob}, 403, "forbidden",
                 "permission_error"),
                ("GET", f"{own}/models", {"headers": bob}, 403, "forbidden", "permission_error"),
                ("POST", chat, {"json": seed, "headers": {"Authorization": ""}}, 401,
                 "token_missing", "invalid_request_error"),
                ("POST", chat, {"json": {"temperature": 0.7}}, 400,
                 "missing_required_parameter", "invalid_request_error"),
            ]  # fmt: skip
            for method, path, options, status, code, kind in refusals:
                answer = await client.request(method, path, **options)
                assert answer.status_code == status, answer.text
                error = answer.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}
                assert (error["code"], error["type"]) == (code, kind)
                if code == "model_mismatch":
                    assert "'qwen'" in error["message"] and "'llama'" in error["message"]
            assert len(sent) == count  # none of them reached the model server

            # Only a UUID then /v1 is a server's path.
            assert (
                await client.post("/not-a-uuid/v1/chat/completions", json=seed)
            ).status_code == 404

    asyncio.run(scenario())


def test_without_stream_usage_injection_a_stream_goes_as_asked_counted_by_its_chunks() -> None:
    """GATEWAY_INJECT_STREAM_USAGE=false, for servers that refuse `stream_options`: the
    request reaches the server as the client sent it, the stream comes back unchanged,
    and its completion tokens are counted one a text chunk."""
    sent: list[dict[str, Any]] = []
    chunks = [{"choices": [{"index": 0, "delta": {"content": t}}]} for t in ("Hel", "lo", "!")]
    events = b"".join(b"data: %s\n\n" % json.dumps(c).encode() for c in chunks)
    events += b"data: [DONE]\n\n"

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent.append((await read_request(reader))[1])
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(events), events)
        )
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with (
            serving(recording) as port,
            gateway(port, inject_stream_usage=False) as (
                client,
                _,
                metrics,
            ),
        ):
            answer = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
            assert answer.status_code == 200
            assert answer.content == events
            assert sent == [{**CHAT, "stream": True}]  # no stream_options added
            out = metrics.registry.get_sample_value(
                "modelserve_gateway_tokens_total",
                {"user": "alice", "model": MODEL, "direction": "out"},
            )
            assert out == 3
            # The Responses API's streams alike: sent without stream_options, answered
            # with the text and a Response whose usage the server did not tell.
            asked = {"model": MODEL, "input": "Hi", "stream": True}
            answer = await client.post("/v1/responses", json=asked)
            assert answer.status_code == 200, answer.text
            assert "stream_options" not in sent[1] and sent[1]["stream"] is True
            done = [
                json.loads(line.removeprefix("data: "))
                for line in answer.text.splitlines()
                if line.startswith("data: ") and '"response.completed"' in line
            ]
            assert [d["response"]["output"][0]["content"][0]["text"] for d in done] == ["Hello!"]
            assert done[0]["response"]["usage"] is None

    asyncio.run(scenario())


def test_a_media_url_into_the_cluster_is_refused_before_the_model_server_sees_it() -> None:
    """The model server would fetch it from inside the cluster (the metadata service, a
    Service, the gateway itself): both doors refuse it with 400, naming the field, and
    pass a `data:` URL on as it came."""
    sent: list[tuple[str, dict[str, Any]]] = []

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent.append(await read_request(reader))
        writer.write(answer_with(json.dumps({"choices": []}).encode()))
        await writer.drain()
        writer.close()

    def with_image(url: str) -> dict[str, Any]:
        part = {"type": "image_url", "image_url": {"url": url}}
        content = [{"type": "text", "text": "What is it?"}, part]
        return {**CHAT, "messages": [{"role": "user", "content": content}]}

    async def scenario() -> None:
        async with serving(recording) as port, gateway(port) as (client, _, _):
            for path in ("/v1/chat/completions", f"/{SERVER_ID}/v1/chat/completions"):
                for url in (
                    "http://169.254.169.254/latest/meta-data/iam/",
                    f"http://127.0.0.1:{port}/v1/models",
                    "http://localhost:8200/auth/keys",
                    "file:///var/run/secrets/kubernetes.io/serviceaccount/token",
                ):
                    answer = await client.post(path, json=with_image(url))
                    assert answer.status_code == 400, answer.text
                    error = answer.json()["error"]
                    assert error["code"] == "media_url_not_allowed"
                    assert error["param"] == "messages[0].content[1].image_url.url"
                    assert error["type"] == "invalid_request_error"
            assert sent == []

            inline = with_image("data:image/png;base64,iVBORw0KGgo=")
            answer = await client.post("/v1/chat/completions", json=inline)
            assert answer.status_code == 200, answer.text
            assert sent == [("/v1/chat/completions", inline)]

    asyncio.run(scenario())
