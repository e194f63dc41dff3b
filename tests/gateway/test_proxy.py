"""The OpenAI-compatible proxy against real components: the control plane with the operator,
the SmolLM2 llama.cpp server behind an `external` ModelServe, and (for behaviours a real
model server cannot be told to show on demand: a gated or endless stream, a reset, a 500,
silence) an OpenAI-shaped server of this test's own on loopback, behind ModelServes too.

One gateway (a process, watching the cluster) serves the whole module.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import openai
import pytest
import yaml
from aiohttp import web
from pydantic import SecretStr

from modelserve.common.modelserve import (
    API_KEY_HOSTS_ANNOTATION,
    API_KEY_LABEL,
    OWNER_LABEL,
    TEAM_LABEL,
)
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import LlmServer
from modelserve.testbed.platform import RunningOperator, RunningService
from modelserve.testbed.polling import early_in_a_minute, wait_for
from modelserve.testbed.testing_clients import error_of, metric
from modelserve.testbed.testing_services import service_on_fresh_schema
from modelserve.testbed.threaded_http import ThreadedApp

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]

SECRET = "proxy-tests-secret-of-at-least-32-bytes!"
READ_TIMEOUT = 8  # the gateway's upstream read timeout in this module
MAX_BODY = 65536
FAKE_KEY = "fake-upstream-key-123"
HI = [{"role": "user", "content": "Hi"}]
# What a model server that crashed answers (vLLM's and llama-cpp-python's do so).
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/opt/venv/lib/python3.11/site-packages/vllm/engine.py", line 42, in step\n'
    "torch.OutOfMemoryError: CUDA out of memory"
)


# --- A model server of our own ---------------------------------------------------------


def _chunk(content: str | None, **extra: Any) -> bytes:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}}]
    event = {"id": "chatcmpl-f", "object": "chat.completion.chunk", "choices": choices, **extra}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


class FakeServer(ThreadedApp):
    """OpenAI-shaped, on loopback, in a thread; each model name picks a behaviour."""

    MODELS = (
        "fake-echo",
        "fake-gated",
        "fake-slow",
        "fake-reset",
        "fake-error",
        "fake-silent",
        "fake-lingering",
        "fake-unlabelled",
        "fake-redirect",
    )

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.release = threading.Event()  # lets fake-gated send the rest of its stream
        self.slow_closed = threading.Event()  # fake-slow found its client gone
        self.slow_sent = 0
        self.silent_closed = threading.Event()  # fake-silent's client went away
        self.redirected: list[str] = []  # requests that followed fake-redirect's Location

    def stop(self) -> None:
        self.release.set()
        super().stop()

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            app.router.add_post(path, self._answer)
        app.router.add_route("*", "/elsewhere", self._elsewhere)
        return app

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m} for m in self.MODELS]})

    async def _elsewhere(self, request: web.Request) -> web.Response:
        self.redirected.append(request.headers.get("Authorization", ""))
        return web.json_response({"choices": [], "usage": {}})

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(({k.lower(): v for k, v in request.headers.items()}, body))
        model = body["model"]
        if model == "fake-reset":
            assert request.transport is not None
            request.transport.close()  # the server dies with the request
            return web.Response()
        if model == "fake-error":
            return web.Response(text=TRACEBACK, status=500)
        if model == "fake-redirect":
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{self.port}/elsewhere")
        if model == "fake-silent":
            try:
                await asyncio.sleep(3600)
            finally:
                self.silent_closed.set()
        if not body.get("stream"):
            usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
            if request.path.endswith("/embeddings"):
                return web.json_response({"data": [{"embedding": [0.5, 0.25]}], "usage": usage})
            choice = {"index": 0, "message": {"role": "assistant", "content": "Hello there"}}
            return web.json_response({"choices": [choice], "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if model == "fake-gated":
            await response.write(_chunk("first"))
            loop = asyncio.get_running_loop()
            if not await loop.run_in_executor(None, self.release.wait, 30):
                # Never released: the gateway held "first" back (a buffered stream) and the
                # test could not read it. The stream breaks off, without " second" or
                # [DONE], so such a gateway can never pass, however long it waits.
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(_chunk(" second"))
        elif model == "fake-slow":
            try:
                for index in range(600):
                    await response.write(_chunk(f" {index}"))
                    self.slow_sent = index + 1
                    await asyncio.sleep(0.05)
            except (ConnectionError, asyncio.CancelledError):
                self.slow_closed.set()
                raise
        else:
            for piece in ("Hello", " there", "!"):
                await response.write(_chunk(piece))
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
                await response.write(_chunk(None, usage=usage))
        await response.write(b"data: [DONE]\n\n")
        if model == "fake-lingering":
            await asyncio.sleep(1)  # the body ends well after its last event
        await response.write_eof()
        return response


# --- The module's cluster objects and gateway --------------------------------------------


def modelserve(name: str, url: str, served: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}},
        "spec": {"runtime": "external", "model": {"servedName": served}, "external": {"url": url}},
    }
    body["spec"]["external"].update(extra)
    return body


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def servers(
    crds: KubeCluster,
    operator: RunningOperator,
    cluster_namespace: str,
    llm: LlmServer,
    fake: FakeServer,
) -> dict[str, str]:
    """ModelServes for SmolLM2, each fake model, and one whose server is unreachable;
    served name -> phase, once each has its phase."""
    for secret in ("fake-key", "fake-key-unlabelled"):
        crds.kubectl(
            "create", "secret", "generic", secret, "-n", cluster_namespace,
            f"--from-literal=api-key={FAKE_KEY}",
        )  # fmt: skip
    # Only a Secret given to ModelServes by its label is read for a key.
    crds.kubectl("label", "secret", "fake-key", "-n", cluster_namespace, f"{API_KEY_LABEL}=true")
    # ... and sent only to the hosts it names.
    hosts = f"{API_KEY_HOSTS_ANNOTATION}=127.0.0.1:{fake.port}"
    crds.kubectl("annotate", "secret", "fake-key", "-n", cluster_namespace, hosts)
    secrets = {"fake-echo": "fake-key", "fake-unlabelled": "fake-key-unlabelled"}
    bodies = [modelserve("smollm2", llm.url, llm.alias)]
    for model in FakeServer.MODELS:
        ref = {"apiKeySecretRef": {"name": secrets[model]}} if model in secrets else {}
        bodies.append(modelserve(model, fake.url, model, **ref))
    bodies.append(modelserve("fake-unready", "http://127.0.0.1:9/v1", "fake-unready"))
    crds.kubectl(
        "apply", "-n", cluster_namespace, "-f", "-",
        stdin=yaml.safe_dump_all(bodies),
    )  # fmt: skip
    wanted = {body["spec"]["model"]["servedName"]: "Ready" for body in bodies}
    wanted["fake-unready"] = "Degraded"

    def phases() -> dict[str, str] | None:
        items = crds.get_json("-n", cluster_namespace, "ms")["items"]
        found = {
            item["spec"]["model"]["servedName"]: (item.get("status") or {}).get("phase")
            for item in items
        }
        return found if found == wanted else None

    return wait_for(phases, timeout=90, what="the module's servers to reach their phases")


@pytest.fixture(scope="module")
def gateway(
    crds: KubeCluster,
    gateway_kube: str,
    database_url: str,
    testbed_dir: Path,
    servers: dict[str, str],
) -> Iterator[str]:
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "proxy-tests-admin-password",
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_UPSTREAM_READ_TIMEOUT": str(READ_TIMEOUT),
        "GATEWAY_MAX_BODY_BYTES": str(MAX_BODY),
    }
    with service_on_fresh_schema(
        "gateway", database_url, testbed_dir / "logs", settings, prefix="gateway_proxy"
    ) as service:
        yield service.url


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    return {
        "alice": signer.sign("alice", teams=["nlp"]),
        "carol": signer.sign("carol", teams=["vision", "nlp"]),
        "bob": signer.sign("bob"),
    }


def client(gateway: str, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=token, max_retries=0, timeout=60)


def raw(gateway: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=gateway, headers=headers, timeout=60)


def routed(http: httpx.Client, body: dict[str, Any], path: str = "/v1/chat/completions") -> Any:
    """The first answer that is not "unknown" or "not ready": the watch may still be
    bringing the server's latest status to the gateway."""

    def attempt() -> httpx.Response | None:
        answer = http.post(path, json=body)
        code = answer.json()["error"]["code"] if answer.status_code in (404, 503) else None
        return None if code in ("model_not_found", "model_not_ready") else answer

    return wait_for(attempt, timeout=30, what=f"the gateway to route {body['model']}")


@pytest.fixture(scope="module")
def smollm2(gateway: str, tokens: dict[str, str], llm: LlmServer) -> str:
    with raw(gateway, tokens["alice"]) as http:
        body = {"model": llm.alias, "messages": [{"role": "user", "content": "Hi"}]}
        answer = routed(http, {**body, "max_tokens": 1})
        assert answer.status_code == 200, answer.text
    return llm.alias


# --- The official client against SmolLM2 ------------------------------------------------


def test_chat_and_completions_through_the_official_client(
    gateway: str, tokens: dict[str, str], smollm2: str
) -> None:
    ai = client(gateway, tokens["alice"])
    chat = ai.chat.completions.create(
        model=smollm2,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
    )
    assert chat.choices[0].message.content
    assert chat.usage is not None and chat.usage.completion_tokens > 0

    # Extra fields pass through: echo and logprobs (OpenAI's), top_k (a vendor's).
    completion = ai.completions.create(
        model=smollm2,
        prompt="The capital of France is",
        max_tokens=4,
        temperature=0,
        echo=True,
        logprobs=2,
        extra_body={"top_k": 1},
    )
    choice = completion.choices[0]
    assert choice.text.startswith("The capital of France is")
    assert choice.logprobs is not None and choice.logprobs.tokens

    # A team member may use the server too.
    listed = [model.id for model in client(gateway, tokens["carol"]).models.list()]
    assert smollm2 in listed
    assert "fake-echo" in listed


def test_streamed_chat_from_smollm2(gateway: str, tokens: dict[str, str], smollm2: str) -> None:
    before = metric(gateway, "modelserve_gateway_tokens_total", user="alice", model=smollm2)
    stream = client(gateway, tokens["alice"]).chat.completions.create(
        model=smollm2,
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=12,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    assert len(chunks) > 3
    assert all(chunk.choices for chunk in chunks)  # no usage chunk the client did not ask for
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    # llama-cpp-python reports no usage in a stream: its text chunks are counted.
    after = metric(gateway, "modelserve_gateway_tokens_total", user="alice", model=smollm2)
    assert after > before


def test_models_list_shows_only_what_the_caller_may_use(
    gateway: str, tokens: dict[str, str], smollm2: str
) -> None:
    mine = {model.id: model for model in client(gateway, tokens["alice"]).models.list()}
    assert set(mine) >= {smollm2, "fake-echo", "fake-unready"}
    assert mine[smollm2].owned_by == "alice"
    assert mine[smollm2].object == "model"
    assert client(gateway, tokens["alice"]).models.retrieve(smollm2).id == smollm2
    # bob owns none of them and is in no team: none exists for him.
    assert [model.id for model in client(gateway, tokens["bob"]).models.list()] == []
    with pytest.raises(openai.NotFoundError):
        client(gateway, tokens["bob"]).chat.completions.create(
            model=smollm2, messages=[{"role": "user", "content": "Hi"}]
        )


# --- Errors in OpenAI's shape -------------------------------------------------------------


def test_unknown_model_is_404(gateway: str, tokens: dict[str, str], smollm2: str) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client(gateway, tokens["alice"]).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "Hi"}]
        )
    assert raised.value.code == "model_not_found"
    assert "no-such-model" in raised.value.message
    with pytest.raises(openai.NotFoundError):
        client(gateway, tokens["alice"]).models.retrieve("no-such-model")


def test_a_server_that_is_not_ready_is_503_with_retry_after(
    gateway: str, tokens: dict[str, str], servers: dict[str, str]
) -> None:
    body = {"model": "fake-unready", "messages": [{"role": "user", "content": "Hi"}]}
    with raw(gateway, tokens["alice"]) as http:

        def not_ready() -> httpx.Response | None:
            answer = http.post("/v1/chat/completions", json=body)
            return answer if answer.status_code == 503 else None

        answer = wait_for(not_ready, timeout=30, what="fake-unready to be known as not ready")
    assert int(answer.headers["retry-after"]) > 0
    error = error_of(answer)
    assert error["code"] == "model_not_ready"
    assert error["type"] == "server_error"
    assert "Degraded" in error["message"]


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("fake-reset", 502, "upstream_unreachable"),
        ("fake-error", 502, "upstream_error"),
        ("fake-silent", 504, "upstream_timeout"),
    ],
)
def test_upstream_failures_are_502_and_504(
    gateway: str,
    tokens: dict[str, str],
    servers: dict[str, str],
    model: str,
    status: int,
    code: str,
) -> None:
    before = metric(gateway, "modelserve_gateway_upstream_errors_total", model=model)
    with raw(gateway, tokens["alice"]) as http:
        answer = routed(http, {"model": model, "messages": [{"role": "user", "content": "Hi"}]})
    assert answer.status_code == status, answer.text
    error = error_of(answer)
    assert (error["code"], error["type"]) == (code, "server_error")
    if model == "fake-error":
        # The server is named, what it said is not: that is for the gateway's log.
        assert f"/{model} failed on this request (it answered 500)" in error["message"]
        for leak in ("Traceback", "/opt/venv", "CUDA"):
            assert leak not in answer.text
    assert metric(gateway, "modelserve_gateway_upstream_errors_total", model=model) == before + 1


def test_a_model_servers_redirect_is_never_followed(
    gateway: str, tokens: dict[str, str], fake: FakeServer
) -> None:
    """An external server that answers 307 elsewhere: the gateway goes nowhere else (no
    request, no key sent to the Location) and answers 502 in OpenAI's shape."""
    with raw(gateway, tokens["alice"]) as http:
        response = http.post(
            "/v1/chat/completions", json={"model": "fake-redirect", "messages": HI}
        )
    assert response.status_code == 502, response.text
    assert error_of(response)["code"] == "upstream_redirect"
    assert "elsewhere" not in response.text
    assert fake.redirected == []


def test_a_scaled_request_never_shows_the_model_servers_traceback(
    gateway: str, tokens: dict[str, str], servers: dict[str, str]
) -> None:
    """Self-consistency over two candidates from a server that crashes: 502, its body
    for the gateway's log only."""
    body = {"model": "fake-error", "messages": HI, "budget": 2, "algorithm": "self-consistency"}
    with raw(gateway, tokens["alice"]) as http:
        answer = routed(http, body)
    assert answer.status_code == 502, answer.text
    assert "answered 500" in error_of(answer)["message"]
    for leak in ("Traceback", "/opt/venv", "CUDA"):
        assert leak not in answer.text


def test_bad_requests_are_4xx_in_openai_shape(gateway: str, tokens: dict[str, str]) -> None:
    with raw(gateway, tokens["alice"]) as http:
        cases = [
            (b"{not json", 400, "invalid_json", None),
            (b"[1, 2]", 400, "invalid_json", None),
            (b'{"messages": HI}', 400, "missing_required_parameter", "model"),
            (b'{"model": "fake-echo"}', 400, "missing_required_parameter", "messages"),
            (b'{"model": "fake-echo", "messages": HI, "stream": "yes"}', 400, None, "stream"),
            (b"\xff\xfe", 400, "invalid_json", None),
            # The shape of a chat completion: what the gateway knows is checked.
            (b'{"model": 5, "messages": HI}', 400, "missing_required_parameter", "model"),
            (b'{"model": "fake-echo", "messages": "hi"}', 400, "invalid_type", "messages"),
            (b'{"model": "fake-echo", "messages": []}', 400, "invalid_value", "messages"),
            (b'{"model": "fake-echo", "messages": ["hi"]}', 400, None, "messages[0]"),
            (
                b'{"model": "fake-echo", "messages": [{"content": "hi"}]}',
                400,
                "missing_required_parameter",
                "messages[0].role",
            ),
            (b'{"model": "fake-echo", "messages": HI, "max_tokens": "9"}', 400, None, "max_tokens"),
            (b'{"model": "fake-echo", "messages": HI, "max_tokens": -1}', 400, None, "max_tokens"),
            (
                b'{"model": "fake-echo", "messages": HI, "max_tokens": 1e40}',
                400,
                None,
                "max_tokens",
            ),
            (b'{"model": "fake-echo", "messages": HI, "n": 0}', 400, "invalid_value", "n"),
            (b'{"model": "fake-echo", "messages": HI, "temperature": 7}', 400, None, "temperature"),
            (b'{"model": "fake-echo", "messages": HI, "top_p": "x"}', 400, None, "top_p"),
            (b'{"model": "fake-echo", "messages": HI, "top_p": NaN}', 400, "invalid_json", None),
            (b'{"model": "fake-echo", "messages": HI, "stop": [1]}', 400, None, "stop"),
            (b'{"model": "fake-\\u0000", "messages": HI}', 404, "model_not_found", "model"),
        ]
        for content, status, code, param in cases:
            content = content.replace(b"HI", json.dumps(HI).encode())
            answer = http.post("/v1/chat/completions", content=content)
            assert answer.status_code == status, (content, answer.text)
            error = error_of(answer)
            # OpenAI's type for an unknown model too.
            assert error["type"] == "invalid_request_error"
            assert error["param"] == param, (content, error)
            if code:
                assert error["code"] == code

        big = {"model": "fake-echo", "messages": [{"role": "user", "content": "x" * MAX_BODY}]}
        too_big = http.post("/v1/chat/completions", json=big)
        assert too_big.status_code == 413
        assert error_of(too_big)["code"] == "body_too_large"

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it comes
            yield b'{"model": "fake-echo", "messages": [{"role": "user", "content": "'
            for _ in range(MAX_BODY // 1024 + 1):
                yield b"x" * 1024
            yield b'"}]}'

        streamed = http.post("/v1/chat/completions", content=chunked())
        assert streamed.status_code == 413
        assert error_of(streamed)["code"] == "body_too_large"

        missing = http.post("/v1/embeddings", json={"model": "fake-echo"})
        assert error_of(missing)["param"] == "input"
        for body, param in (
            ({"model": "fake-echo", "prompt": {"text": "x"}}, "prompt"),
            ({"model": "fake-echo", "prompt": "x", "echo": "yes"}, "echo"),
            ({"model": "fake-echo", "prompt": "x", "logprobs": -1}, "logprobs"),
        ):
            answer = http.post("/v1/completions", json=body)
            assert (answer.status_code, error_of(answer)["param"]) == (400, param), answer.text
        wrong = http.post("/v1/embeddings", json={"model": "fake-echo", "input": [[1], "x"]})
        assert (wrong.status_code, error_of(wrong)["param"]) == (400, "input")
        # Fields it does not know pass through, whatever they hold (the server's business).
        extra = {"model": "fake-echo", "messages": HI, "top_k": "any", "vendor": [None]}
        assert http.post("/v1/chat/completions", json=extra).status_code == 200
        route = http.get("/v1/no-such-route")
        assert route.status_code == 404
        assert error_of(route)["type"] == "invalid_request_error"


def test_bad_or_expired_tokens_are_401_in_openai_shape(
    gateway: str, tokens: dict[str, str]
) -> None:
    body = {"model": "fake-echo", "messages": [{"role": "user", "content": "Hi"}]}
    now = int(time.time())
    claims = {"sub": "alice", "iss": "modelserve", "aud": "modelserve", "jti": "x"}
    expired = jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, SECRET, "HS256")
    forged = jwt.encode({**claims, "iat": now, "exp": now + 60}, "another-secret-" * 3, "HS256")
    for token, code in (
        (None, "token_missing"),
        ("not-a-jwt", "token_invalid"),
        (expired, "token_expired"),
        (forged, "token_invalid"),
    ):
        with raw(gateway, token) as http:
            answer = http.post("/v1/chat/completions", json=body)
            assert answer.status_code == 401
            error = error_of(answer)
            assert (error["type"], error["code"]) == ("invalid_request_error", code)
            assert http.get("/v1/models").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        client(gateway, expired).models.list()
    # Elsewhere the platform's shape stays.
    platform = httpx.get(f"{gateway}/auth/verify?server=x").json()
    assert set(platform["error"]) >= {"code", "message"}
    assert "type" not in platform["error"]


# --- Streams, extras, usage and disconnects, with the server of our own -----------------


def test_streams_pass_through_as_they_arrive(
    gateway: str, tokens: dict[str, str], fake: FakeServer, servers: dict[str, str]
) -> None:
    with raw(gateway, tokens["alice"]) as http:
        routed(http, {"model": "fake-echo", "messages": HI})
        fake.release.clear()
        body = {"model": "fake-gated", "messages": HI, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            lines = answer.iter_lines()
            first = next(line for line in lines if line)
            # The server holds the rest until we have the first chunk: it came through alone.
            assert '"first"' in first
            fake.release.set()
            rest = [line for line in lines if line]
        assert '" second"' in rest[0]
        assert rest[-1] == "data: [DONE]"


def test_extra_fields_and_the_servers_key_reach_the_server(
    gateway: str, tokens: dict[str, str], fake: FakeServer, servers: dict[str, str]
) -> None:
    ai = client(gateway, tokens["alice"])
    with raw(gateway, tokens["alice"]) as http:
        routed(http, {"model": "fake-echo", "messages": HI})
    fake.requests.clear()
    ai.chat.completions.create(
        model="fake-echo",
        messages=[{"role": "user", "content": "Hi"}],
        logprobs=True,
        top_logprobs=2,
        extra_body={"top_k": 1, "repetition_penalty": 1.1, "vendor": {"x": [1, 2]}},
        extra_headers={"X-Request-Id": "req-42"},
    )
    headers, body = fake.requests[-1]
    assert body["top_k"] == 1
    assert body["repetition_penalty"] == 1.1
    assert body["vendor"] == {"x": [1, 2]}
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    assert "stream_options" not in body  # asked only of streams
    # The external server's key from its Secret, never the caller's platform token.
    assert headers["authorization"] == f"Bearer {FAKE_KEY}"
    # As a UUID (llama-cpp-python's server refuses any other): req-42's UUID 5.
    assert headers["x-request-id"] == str(uuid.uuid5(uuid.NAMESPACE_OID, "req-42"))
    ai.embeddings.create(model="fake-echo", input="hello")
    assert fake.requests[-1][1]["input"] == "hello"


def test_stream_usage_is_asked_for_counted_and_not_shown_unasked(
    gateway: str, tokens: dict[str, str], fake: FakeServer, servers: dict[str, str]
) -> None:
    ai = client(gateway, tokens["carol"])
    with raw(gateway, tokens["carol"]) as http:
        routed(http, {"model": "fake-echo", "messages": HI})
    counted = {"user": "carol", "model": "fake-echo"}
    before_in = metric(gateway, "modelserve_gateway_tokens_total", direction="in", **counted)
    before_out = metric(gateway, "modelserve_gateway_tokens_total", direction="out", **counted)

    messages: list[Any] = [{"role": "user", "content": "Hi"}]
    unasked = list(ai.chat.completions.create(model="fake-echo", messages=messages, stream=True))
    assert fake.requests[-1][1]["stream_options"] == {"include_usage": True}
    assert [c.choices[0].delta.content for c in unasked] == ["Hello", " there", "!"]
    assert all(c.usage is None for c in unasked)

    asked = list(
        ai.chat.completions.create(
            model="fake-echo",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert asked[-1].choices == []
    assert asked[-1].usage is not None and asked[-1].usage.completion_tokens == 3

    after_in = metric(gateway, "modelserve_gateway_tokens_total", direction="in", **counted)
    after_out = metric(gateway, "modelserve_gateway_tokens_total", direction="out", **counted)
    assert (after_in - before_in, after_out - before_out) == (22, 6)


def test_a_client_leaving_mid_stream_cancels_the_upstream_request(
    gateway: str, tokens: dict[str, str], fake: FakeServer, servers: dict[str, str]
) -> None:
    fake.slow_closed.clear()
    left_before = metric(
        gateway, "modelserve_gateway_requests_total", model="fake-slow", status="499"
    )
    with raw(gateway, tokens["alice"]) as http:
        routed(http, {"model": "fake-echo", "messages": HI})
        body = {"model": "fake-slow", "messages": HI, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as answer:
            assert answer.status_code == 200
            lines = answer.iter_lines()
            assert '" 0"' in next(line for line in lines if line)
            assert '" 1"' in next(line for line in lines if line)
            in_flight = metric(gateway, "modelserve_gateway_in_flight_requests", model="fake-slow")
            assert in_flight == 1
        # Leaving the block closed our connection mid-stream.
    assert fake.slow_closed.wait(15), "the model server never saw its client go"
    assert fake.slow_sent < 600
    wait_for(
        lambda: metric(gateway, "modelserve_gateway_in_flight_requests", model="fake-slow") == 0,
        timeout=10,
        what="no request in flight",
    )
    left = metric(gateway, "modelserve_gateway_requests_total", model="fake-slow", status="499")
    assert left == left_before + 1


def test_a_secret_not_labelled_for_api_keys_is_never_sent_upstream(
    gateway: str, tokens: dict[str, str], fake: FakeServer, servers: dict[str, str]
) -> None:
    # The ModelServe names a Secret that nobody gave to ModelServes: whoever may create a
    # ModelServe must not get a namespace's Secrets sent to a URL of their choosing.
    ai = client(gateway, tokens["alice"])
    messages: list[Any] = [{"role": "user", "content": "Hi"}]
    ai.chat.completions.create(model="fake-unlabelled", messages=messages)
    headers, body = fake.requests[-1]
    assert body["model"] == "fake-unlabelled"
    assert FAKE_KEY not in headers.get("authorization", "")
    assert "authorization" not in headers


def test_a_stream_the_client_closes_after_its_last_event_counts_as_answered(
    gateway: str, tokens: dict[str, str]
) -> None:
    # The openai client closes a stream as soon as it reads `[DONE]`; the model server's
    # body may end later. The client had its whole answer: a 200, not a 499.
    ai = client(gateway, tokens["alice"])
    messages: list[Any] = [{"role": "user", "content": "Hi"}]
    chunks = list(
        ai.chat.completions.create(model="fake-lingering", messages=messages, stream=True)
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Hello there!"
    wait_for(
        lambda: (
            metric(gateway, "modelserve_gateway_in_flight_requests", model="fake-lingering") == 0
        ),
        timeout=10,
        what="no request in flight",
    )
    answered = metric(gateway, "modelserve_gateway_requests_total", model="fake-lingering")
    assert answered == 1
    assert (
        metric(gateway, "modelserve_gateway_requests_total", model="fake-lingering", status="200")
        == 1
    )


def test_a_client_leaving_before_the_answer_cancels_the_upstream_request(
    gateway: str, tokens: dict[str, str], fake: FakeServer, servers: dict[str, str]
) -> None:
    body = {"model": "fake-silent", "messages": HI}
    with raw(gateway, tokens["alice"]) as http:
        routed(http, {"model": "fake-echo", "messages": HI})
        fake.silent_closed.clear()
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", json=body, timeout=1)
    # Well before the gateway's own read timeout would have ended it.
    assert fake.silent_closed.wait(READ_TIMEOUT / 2), "the model server never saw its client go"


# --- Metrics --------------------------------------------------------------------------


def test_metrics_count_requests_latency_first_tokens_and_tokens(
    gateway: str, tokens: dict[str, str], smollm2: str
) -> None:
    route = "/v1/chat/completions"
    ai = client(gateway, tokens["alice"])
    before = metric(
        gateway, "modelserve_gateway_requests_total", model=smollm2, route=route, status="200"
    )
    messages: list[Any] = [{"role": "user", "content": "Hi"}]
    ai.chat.completions.create(model=smollm2, messages=messages, max_tokens=2)
    list(ai.chat.completions.create(model=smollm2, messages=messages, max_tokens=2, stream=True))
    # A stream is counted once its last byte is sent, which the client may read first.
    wait_for(
        lambda: (
            metric(
                gateway,
                "modelserve_gateway_requests_total",
                model=smollm2,
                route=route,
                status="200",
            )
            == before + 2
        ),
        timeout=10,
        what="both requests to be counted",
    )
    durations = metric(
        gateway, "modelserve_gateway_request_duration_seconds_count", model=smollm2, route=route
    )
    assert durations >= 2
    first_tokens = metric(
        gateway, "modelserve_gateway_time_to_first_token_seconds_count", model=smollm2
    )
    assert first_tokens >= 1
    assert metric(gateway, "modelserve_gateway_tokens_total", user="alice", direction="in") > 0
    assert metric(gateway, "modelserve_gateway_in_flight_requests", model=smollm2) == 0
    # Errors are counted too, with no model label for names nobody serves.
    with pytest.raises(openai.NotFoundError):
        ai.chat.completions.create(model="made-up-name", messages=messages)
    assert metric(gateway, "modelserve_gateway_requests_total", status="404", model="") >= 1
    assert "made-up-name" not in httpx.get(f"{gateway}/metrics").text


# --- The contract service decides, and learns what was used -------------------------------


def test_the_contract_decides_and_learns_the_usage(
    crds: KubeCluster,
    gateway_kube: str,
    servers: dict[str, str],
    llm: LlmServer,
    signer: TokenSigner,
    contract_service: RunningService,
    start_gateway: Callable[..., RunningService],
) -> None:
    root = {"Authorization": f"Bearer {signer.sign('root', roles=['admin'])}"}
    with httpx.Client(base_url=contract_service.url, headers=root, timeout=30) as contracts:
        limits = {"models": ["fake-*"], "requests_per_minute": 2}
        assert contracts.put("/contracts/user/alice", json=limits).status_code == 200
        gateway = start_gateway(
            GATEWAY_KUBECONFIG=gateway_kube,
            GATEWAY_CONTRACT_URL=contract_service.url,
            GATEWAY_USAGE_FLUSH_SECONDS="0.2",
        )
        ai = client(gateway.url, signer.sign("alice", teams=["nlp"]))
        messages: list[Any] = [{"role": "user", "content": "Hi"}]
        with pytest.raises(openai.PermissionDeniedError) as refused:
            ai.chat.completions.create(model=llm.alias, messages=messages)
        assert refused.value.code == "model_not_allowed"

        early_in_a_minute()
        with raw(gateway.url, signer.sign("alice", teams=["nlp"])) as http:
            first = routed(http, {"model": "fake-echo", "messages": messages, "max_tokens": 5})
            assert first.status_code == 200, first.text
        list(ai.chat.completions.create(model="fake-echo", messages=messages, stream=True))
        with pytest.raises(openai.RateLimitError) as limited:
            ai.chat.completions.create(model="fake-echo", messages=messages)
        assert limited.value.code == "request_rate_exceeded"

        def recorded() -> dict[str, Any] | None:
            usage = contracts.get("/usage", params={"user": "alice", "period": "day"}).json()
            return usage if usage["completion_tokens"] >= 6 else None

        usage = wait_for(recorded, timeout=15, what="the usage to reach the contract service")
        # Two answers of 11 prompt and 3 completion tokens (the stream's usage asked for).
        assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (
            2,
            22,
            6,
        )
        assert [model["model"] for model in usage["models"]] == ["fake-echo"]

    contract_service.stop()
    with raw(gateway.url, signer.sign("alice")) as http:
        unchecked = http.post(
            "/v1/chat/completions", json={"model": "fake-echo", "messages": messages}
        )
    assert unchecked.status_code == 503
    assert error_of(unchecked)["code"] == "contract_unavailable"
    assert unchecked.headers["retry-after"] == "1"
