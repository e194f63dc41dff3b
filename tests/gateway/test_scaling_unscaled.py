"""Scaling never changes the API silently: a chat completion that asks for a budget above 1
but uses tools, several choices (`n`) or logprobs is answered unscaled, as a plain one,
with X-ModelServe-Unscaled saying why and `modelserve_gateway_scaling_skipped_total`
counting it.

End to end: the gateway process, the operator, PostgreSQL and the contract service, with an
OpenAI-shaped model server on loopback (`ToolServer`, below) that answers with tool calls,
several choices and logprobs, and counts the requests it is asked; and the real SmolLM2
server for one real tool-call request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from pydantic import SecretStr

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL, Algorithm, Scaling
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.gateway.scaling_requests import scaling_request, unscalable_reason
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import LlmServer
from modelserve.testbed.platform import RunningOperator, RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_clients import metric
from modelserve.testbed.testing_services import service_on_fresh_schema
from modelserve.testbed.threaded_http import ThreadedApp

SECRET = "gateway-tests-secret-of-at-least-32-bytes"
SERVED = "tooling"  # the served name of the ToolServer's ModelServe
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
TOOL_CALL = {
    "id": "call_weather_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
SKIPPED = "modelserve_gateway_scaling_skipped_total"


# --- the rule, as a pure function --------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({}, None),
        ({"n": 1, "logprobs": False, "tools": [], "tool_choice": "none"}, None),
        ({"tool_choice": None, "top_logprobs": None, "functions": []}, None),
        ({"tools": TOOLS}, "tools"),
        ({"tools": TOOLS, "tool_choice": "none"}, "tools"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "tools"),
        ({"tool_choice": "required"}, "tools"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tools"),
        ({"n": 2}, "n"),
        ({"n": True}, None),  # a bool is no count
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 0}, "logprobs"),
        ({"logprobs": "yes"}, None),
        # Several apply: the first of tools, n, logprobs.
        ({"tools": TOOLS, "n": 3, "logprobs": True}, "tools"),
        ({"n": 3, "logprobs": True, "top_logprobs": 2}, "n"),
    ],
)
def test_unscalable_reason(payload: dict[str, Any], reason: str | None) -> None:
    assert unscalable_reason(payload) == reason


def test_a_request_that_asks_for_scaling_but_cannot_have_it_is_not_active() -> None:
    # A model whose answer pattern does not compile: only a scaled request reads it.
    defaults = Scaling(algorithm=Algorithm.BEST_OF_N, budget=4, answer_pattern="(unclosed")
    payload = {"messages": QUESTION, "tools": TOOLS, "budget": 8}
    scaling = scaling_request(payload, {}, defaults)
    assert scaling.unscaled == "tools"
    assert not scaling.active
    assert "budget" not in payload  # ours, taken out all the same
    # Asking for no scaling is not being skipped.
    plain = scaling_request({"tools": TOOLS, "budget": 1}, {}, defaults)
    assert plain.unscaled is None and not plain.active
    scaled = scaling_request({"budget": 2}, {}, Scaling(algorithm=Algorithm.BEST_OF_N))
    assert scaled.unscaled is None and scaled.active


# --- an OpenAI-shaped model server with tools, n and logprobs ------------------------------


def usage(completion: int) -> dict[str, int]:
    return {"prompt_tokens": 20, "completion_tokens": completion, "total_tokens": 20 + completion}


def event(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class ToolServer(ThreadedApp):
    """Answers a chat completion that offers tools with a call of `get_weather`, one that
    asks `n` with that many choices, one that asks logprobs with them (so a scaled
    request's logprob reward works too); streams when asked. Keeps every body it got."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": SERVED}]})

    @staticmethod
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        """The whole answer to `body`, the same every time it is asked."""
        asked_n = body.get("n")
        n = asked_n if isinstance(asked_n, int) else 1
        choices = []
        for index in range(n):
            if body.get("tools"):
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [TOOL_CALL],
                }
                finish = "tool_calls"
            else:
                message, finish = {"role": "assistant", "content": f"It is 5 ({index})"}, "stop"
            choice: dict[str, Any] = {"index": index, "message": message, "finish_reason": finish}
            if body.get("logprobs") is True:
                tokens = ["It", " is", " 5"]
                choice["logprobs"] = {
                    "content": [
                        {"token": t, "logprob": -0.25, "bytes": None, "top_logprobs": []}
                        for t in tokens
                    ]
                }
            choices.append(choice)
        return {
            "id": "chatcmpl-tooling",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": SERVED,
            "choices": choices,
            "usage": usage(7 * n),
        }

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if body.get("stream") is not True:
            return web.json_response(self.answer(body))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {"id": "chatcmpl-tooling", "object": "chat.completion.chunk", "model": SERVED}
        start = {"role": "assistant", "content": None}
        await response.write(event({**chunk, "choices": [{"index": 0, "delta": start}]}))
        call = {**TOOL_CALL, "index": 0}
        delta = {"tool_calls": [call]} if body.get("tools") else {"content": "It is 5"}
        await response.write(event({**chunk, "choices": [{"index": 0, "delta": delta}]}))
        finish = "tool_calls" if body.get("tools") else "stop"
        last = {"index": 0, "delta": {}, "finish_reason": finish}
        await response.write(event({**chunk, "choices": [last]}))
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(event({**chunk, "choices": [], "usage": usage(7)}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


# --- the platform ------------------------------------------------------------------------


def modelserve(name: str, url: str, served: str, scaling: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}},
        "spec": {
            "runtime": "external",
            "model": {"servedName": served},
            "external": {"url": url},
            "scaling": scaling,
        },
    }


def token(subject: str) -> str:
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    return signer.sign(subject, teams=("nlp",))


def chat(gateway: str, body: dict[str, Any], subject: str = "alice", **headers: str) -> Any:
    return httpx.post(
        f"{gateway}/v1/chat/completions",
        json={"model": SERVED, "messages": QUESTION, **body},
        headers={"Authorization": f"Bearer {token(subject)}", **headers},
        timeout=120,
    )


def apply(crds: KubeCluster, namespace: str, body: dict[str, Any]) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body))


@pytest.fixture(scope="module")
def server() -> Iterator[ToolServer]:
    with ToolServer() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    crds: KubeCluster,
    operator: RunningOperator,
    cluster_namespace: str,
    gateway_kube: str,
    database_url: str,
    testbed_dir: Path,
    module_contract: RunningService,
    server: ToolServer,
) -> Iterator[str]:
    """A gateway routing the ToolServer, whose ModelServe scales by default:
    self-consistency with a budget of 4 (`spec.scaling`)."""
    defaults = {"algorithm": "self-consistency", "budget": 4}
    apply(crds, cluster_namespace, modelserve("tooling", server.url, SERVED, defaults))
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "unscaled-tests-admin-password",
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_CONTRACT_URL": module_contract.url,
    }
    with service_on_fresh_schema(
        "gateway", database_url, testbed_dir / "logs", settings, prefix="gateway_unscaled"
    ) as service:

        def routed() -> bool:
            return bool(chat(service.url, {"budget": 1}).status_code == 200)

        wait_for(routed, timeout=90, what="the gateway to route the tool server")
        yield service.url


def asked(server: ToolServer, since: int) -> list[dict[str, Any]]:
    """The bodies the model server got since it had `since`."""
    return server.requests[since:]


def skipped(gateway: str, reason: str, model: str = SERVED) -> float:
    return metric(gateway, SKIPPED, model=model, reason=reason)


@pytest.mark.kube
@pytest.mark.postgres
def test_tools_with_a_budget_are_answered_unscaled(gateway: str, server: ToolServer) -> None:
    before, counted = len(server.requests), skipped(gateway, "tools")
    scaled_before = metric(gateway, "modelserve_gateway_scaling_requests_total", model=SERVED)
    tokens_before = metric(
        gateway, "modelserve_gateway_tokens_total", user="tom", model=SERVED, direction="out"
    )
    body = {"tools": TOOLS, "budget": 4, "algorithm": "best-of-n", "scaling_trace": True}
    answer = chat(gateway, body, subject="tom")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-modelserve-unscaled"] == "tools"
    # Once, not four times, and without our fields.
    sent = asked(server, before)
    assert len(sent) == 1
    assert sent[0]["tools"] == TOOLS
    assert not {"budget", "algorithm", "alg", "scaling_trace"} & set(sent[0])
    # The model server's answer, tool calls and all, unchanged.
    assert answer.json() == ToolServer.answer(sent[0])
    assert answer.json()["choices"][0]["message"]["tool_calls"] == [TOOL_CALL]
    assert skipped(gateway, "tools") == counted + 1
    # Accounted as a plain request: the server's usage, no scaled request counted.
    wait_for(
        lambda: (
            metric(
                gateway,
                "modelserve_gateway_tokens_total",
                user="tom",
                model=SERVED,
                direction="out",
            )
            == tokens_before + 7
        ),
        timeout=10,
        what="the plain answer's tokens to be counted",
    )
    assert metric(gateway, "modelserve_gateway_scaling_requests_total", model=SERVED) == (
        scaled_before
    )


@pytest.mark.kube
@pytest.mark.postgres
def test_n_under_the_models_default_budget_is_answered_unscaled(
    gateway: str, server: ToolServer
) -> None:
    # No budget in the request: the ModelServe's default (4) would scale it.
    before, counted = len(server.requests), skipped(gateway, "n")
    answer = chat(gateway, {"n": 2})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-modelserve-unscaled"] == "n"
    sent = asked(server, before)
    assert len(sent) == 1 and sent[0]["n"] == 2
    assert [choice["message"]["content"] for choice in answer.json()["choices"]] == [
        "It is 5 (0)",
        "It is 5 (1)",
    ]
    assert skipped(gateway, "n") == counted + 1


@pytest.mark.kube
@pytest.mark.postgres
def test_logprobs_with_a_budget_header_are_answered_unscaled(
    gateway: str, server: ToolServer
) -> None:
    before, counted = len(server.requests), skipped(gateway, "logprobs")
    answer = chat(gateway, {"logprobs": True}, **{"X-ModelServe-Budget": "4"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-modelserve-unscaled"] == "logprobs"
    sent = asked(server, before)
    assert len(sent) == 1 and sent[0]["logprobs"] is True
    assert answer.json() == ToolServer.answer(sent[0])
    assert answer.json()["choices"][0]["logprobs"]["content"][0]["logprob"] == -0.25
    assert skipped(gateway, "logprobs") == counted + 1


@pytest.mark.kube
@pytest.mark.postgres
def test_a_stream_with_tools_says_so_in_its_head(gateway: str, server: ToolServer) -> None:
    before, counted = len(server.requests), skipped(gateway, "tools")
    body = {"model": SERVED, "messages": QUESTION, "tools": TOOLS, "stream": True, "budget": 4}
    with httpx.stream(
        "POST",
        f"{gateway}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {token('alice')}"},
        timeout=60,
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["x-modelserve-unscaled"] == "tools"
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in answer.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    calls = [
        call
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls") or []
    ]
    assert calls == [{**TOOL_CALL, "index": 0}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert len(asked(server, before)) == 1
    assert skipped(gateway, "tools") == counted + 1


@pytest.mark.kube
@pytest.mark.postgres
def test_a_request_without_them_is_still_scaled(gateway: str, server: ToolServer) -> None:
    before, counted = len(server.requests), metric(gateway, SKIPPED, model=SERVED)
    # `n: 1` and `logprobs: false` ask for nothing scaling would drop.
    body = {"budget": 4, "scaling_trace": True, "n": 1, "logprobs": False, "seed": 0}
    answer = chat(gateway, body)
    assert answer.status_code == 200, answer.text
    assert "x-modelserve-unscaled" not in answer.headers
    trace = answer.json()["scaling"]
    assert trace["algorithm"] == "self-consistency" and trace["budget"] == 4
    assert len(asked(server, before)) == 4
    assert metric(gateway, SKIPPED, model=SERVED) == counted


@pytest.mark.kube
@pytest.mark.postgres
def test_no_header_when_scaling_was_not_asked(gateway: str, server: ToolServer) -> None:
    counted = metric(gateway, SKIPPED, model=SERVED)
    for extra in ({"budget": 1}, {"algorithm": "none"}):
        before = len(server.requests)
        answer = chat(gateway, {"tools": TOOLS, "n": 2, "logprobs": True, **extra})
        assert answer.status_code == 200, answer.text
        assert "x-modelserve-unscaled" not in answer.headers
        assert len(asked(server, before)) == 1
        assert answer.json()["choices"][1]["message"]["tool_calls"] == [TOOL_CALL]
    assert metric(gateway, SKIPPED, model=SERVED) == counted


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_a_real_tool_call_request_to_smollm2_is_answered_unscaled(
    crds: KubeCluster, cluster_namespace: str, gateway: str, llm: LlmServer
) -> None:
    apply(crds, cluster_namespace, modelserve("smollm2", llm.url, llm.alias, {}))

    def ready() -> bool:
        status = crds.get_json("ms", "smollm2", "-n", cluster_namespace).get("status") or {}
        return bool(status.get("phase") == "Ready")

    wait_for(ready, timeout=90, what="the SmolLM2 ModelServe to be Ready")
    body = {
        "model": llm.alias,
        "messages": QUESTION,
        "tools": TOOLS,
        "max_tokens": 16,
        "budget": 3,
        "algorithm": "best-of-n",
    }
    headers = {"Authorization": f"Bearer {token('alice')}"}

    def answered() -> Any:
        answer = httpx.post(
            f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=120
        )
        return answer if answer.status_code != 404 else None

    counted = skipped(gateway, "tools", llm.alias)
    answer = wait_for(answered, timeout=30, what="the gateway to route SmolLM2")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-modelserve-unscaled"] == "tools"
    choice = answer.json()["choices"][0]
    # The small model need not call the tool: its one answer is either kind.
    assert choice["message"].get("tool_calls") or choice["message"].get("content") is not None
    assert "scaling" not in answer.json()
    assert skipped(gateway, "tools", llm.alias) == counted + 1


def test_a_budget_in_other_digits_is_a_400_not_a_500() -> None:
    from modelserve.gateway.openai_errors import OpenAIError

    for budget in ("\u00b2", "\u0663"):  # superscript two, Arabic-Indic three
        with pytest.raises(OpenAIError) as refused:
            scaling_request({"budget": budget}, {}, Scaling(algorithm=Algorithm.BEST_OF_N))
        assert (refused.value.status_code, refused.value.code) == (400, "invalid_scaling")
        with pytest.raises(OpenAIError):
            scaling_request({}, {"x-modelserve-budget": budget}, Scaling())
