"""POST /v1/responses: OpenAI's Responses API, answered through the gateway's chat path.

First the pure translation (`responses.requests`, `answers`, `events`) on given bodies;
then end to end with the `openai` client: the gateway process (with the operator,
PostgreSQL and the contract service) in front of a real llama.cpp server (`llama-server`
on SmolLM2) for text, streamed and not, and for a conversation that holds a function
call and its output; and of an OpenAI-shaped model server on loopback (`ToolServer`)
for the function calls a model makes: SmolLM2's chat template makes no tool calls, so
the real server could not show the gateway translating one back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from aiohttp import web
from pydantic import SecretStr

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.gateway.openai_errors import OpenAIError
from modelserve.gateway.responses.answers import response_from_chat
from modelserve.gateway.responses.events import StreamTranslator
from modelserve.gateway.responses.requests import chat_request
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llama_server import LlamaServer, start_llama_server
from modelserve.testbed.platform import RunningOperator, RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_clients import error_of, metric
from modelserve.testbed.testing_services import service_on_fresh_schema
from modelserve.testbed.threaded_http import ThreadedApp

SECRET = "gateway-tests-secret-of-at-least-32-bytes"
SMOL = "rs-smollm2"  # llama-server's ModelServe (served name)
TOOLING = "rs-tooling"  # the ToolServer's
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CHAT_TOOL = {
    "type": "function",
    "function": {k: v for k, v in TOOL.items() if k != "type"},
}
CALL = {"id": "call_weather_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}


def ids() -> Any:
    counts: dict[str, int] = {}

    def new(prefix: str) -> str:
        counts[prefix] = counts.get(prefix, 0) + 1
        return f"{prefix}_{counts[prefix]}"

    return new


# --- the translation, as pure functions --------------------------------------------------


def test_a_string_input_with_instructions_becomes_a_system_and_a_user_message() -> None:
    chat = chat_request(
        {
            "model": "m",
            "input": "Hi",
            "instructions": "Be brief.",
            "max_output_tokens": 16,
            "temperature": 0.5,
            "top_p": 0.9,
            "metadata": {"a": "b"},
            "store": False,
            "top_k": 4,  # no Responses field: passed on as chat's unknown fields are
            "budget": 2,  # the gateway's own (scaling)
        }
    )
    assert chat == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 16,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 4,
        "budget": 2,
    }


def test_input_items_tools_and_text_format_become_chats() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    chat = chat_request(
        {
            "model": "m",
            "stream": True,
            "input": [
                {"role": "developer", "content": "Use tools."},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Hi"}],
                },
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "function_call_output", "call_id": "c2", "output": "two"},
            ],
            "tools": [TOOL],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": False,
            "text": {"format": {"type": "json_schema", "name": "city", "schema": schema}},
        }
    )
    assert chat["messages"] == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    assert chat["tools"] == [CHAT_TOOL]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["parallel_tool_calls"] is False
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": schema},
    }
    # The usage comes in the last event: asked of the model server, unless the gateway
    # asks no stream for it (GATEWAY_INJECT_STREAM_USAGE=false).
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    plain = chat_request({"model": "m", "stream": True, "input": "Hi"}, ask_usage=False)
    assert plain["stream"] is True and "stream_options" not in plain


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [TOOL, {"type": "file_search"}]}, "tools[1].type"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"truncation": "auto"}, "truncation"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file"}]}]},
            "input[0].content[0].type",
        ),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"prompt": 0}, "prompt"),  # 0 is not False
        ({"max_tool_calls": 0}, "max_tool_calls"),
        # What passes through is checked as a chat completion's fields: the tokens held
        # for the request are read from them.
        ({"n": "128"}, "n"),
        ({"n": 100_000}, "n"),
        ({"max_completion_tokens": "100000"}, "max_completion_tokens"),
        ({"messages": [{"role": "user", "content": "other"}]}, "messages"),
    ],
)
def test_what_the_gateway_cannot_honour_is_refused_naming_it(
    extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(OpenAIError) as refused:
        chat_request({"model": "m", "input": "Hi", **extra})
    assert refused.value.status_code == 400
    assert refused.value.param == param


def test_a_chat_answer_becomes_a_response() -> None:
    answer = {
        "created": 1_700_000_000,
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "content": "Let me look.",
                    "tool_calls": [
                        {
                            "id": CALL["id"],
                            "type": "function",
                            "function": {k: CALL[k] for k in ("name", "arguments")},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
    }
    request = {"model": "m", "input": "Hi", "tools": [TOOL], "instructions": "Be brief."}
    response = response_from_chat(request, answer, ids())
    assert response["id"] == "resp_1" and response["object"] == "response"
    assert response["status"] == "completed" and response["created_at"] == 1_700_000_000
    assert response["output"] == [
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "Let me look.", "annotations": [], "logprobs": []}
            ],
        },
        {
            "id": "fc_1",
            "type": "function_call",
            "call_id": CALL["id"],
            "name": "get_weather",
            "arguments": CALL["arguments"],
            "status": "completed",
        },
    ]
    assert response["usage"]["input_tokens"] == 20
    assert response["usage"]["output_tokens"] == 7 and response["usage"]["total_tokens"] == 27
    assert response["tools"] == [TOOL] and response["instructions"] == "Be brief."
    cut = {"choices": [{"finish_reason": "length", "message": {"content": "It"}}]}
    incomplete = response_from_chat(request, cut, ids())
    assert incomplete["status"] == "incomplete"
    assert incomplete["incomplete_details"] == {"reason": "max_output_tokens"}


def sse(*chunks: dict[str, Any]) -> bytes:
    return (
        b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    )


def events_of(data: bytes) -> list[dict[str, Any]]:
    found = []
    for block in data.decode().split("\n\n"):
        lines = block.splitlines()
        if len(lines) == 2 and lines[0].startswith("event: "):
            event = json.loads(lines[1].removeprefix("data: "))
            assert event["type"] == lines[0].removeprefix("event: ")
            found.append(event)
    return found


def test_a_chat_stream_becomes_responses_events_whatever_its_cuts() -> None:
    stream = sse(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}},
    )
    whole = StreamTranslator({"model": "m"}, ids(), now=1.0)
    out = whole.feed(stream) + whole.finish()
    # Cut into 7-byte pieces, the same events.
    cut = StreamTranslator({"model": "m"}, ids(), now=1.0)
    pieces = b"".join(cut.feed(stream[i : i + 7]) for i in range(0, len(stream), 7))
    assert pieces + cut.finish() == out
    events = events_of(out)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[6]["text"] == "Hello"
    assert events[12]["arguments"] == '{"a": 1}' and events[12]["name"] == "f"
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["id"] == events[0]["response"]["id"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["call_id"] == "c1"
    assert final["usage"]["total_tokens"] == 8


def test_an_error_in_the_chat_stream_is_an_error_event_and_the_end() -> None:
    translator = StreamTranslator({"model": "m"}, ids())
    error = {"error": {"message": "broken", "type": "server_error", "param": None, "code": "x"}}
    out = translator.feed(
        b": the model is loading\n\n" + b"data: " + json.dumps(error).encode() + b"\n\n"
    )
    out += translator.finish()
    assert b": the model is loading\n\n" in out  # a keep-alive passes
    events = events_of(out)
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "error"]
    assert events[-1]["message"] == "broken" and events[-1]["code"] == "x"


# --- a model server that calls tools -----------------------------------------------------


class ToolServer(ThreadedApp):
    """Answers a chat completion that offers tools with a call of `get_weather`, streamed
    when asked, and one without (whole) with "It is 5"; keeps the bodies it got."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": TOOLING}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        call = {
            "id": CALL["id"],
            "type": "function",
            "function": {"name": CALL["name"], "arguments": CALL["arguments"]},
        }
        usage = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}
        if body.get("stream") is not True:
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            if not body.get("tools"):
                message = {"role": "assistant", "content": "It is 5"}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return web.json_response(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": TOOLING,
                    "choices": [choice],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": TOOLING}
        first = {
            "index": 0,
            "id": CALL["id"],
            "type": "function",
            "function": {"name": CALL["name"], "arguments": ""},
        }
        deltas: list[dict[str, Any]] = [
            {"role": "assistant", "content": None, "tool_calls": [first]},
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        ]
        for delta in deltas:
            chunk = {**head, "choices": [{"index": 0, "delta": delta}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        last = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
        await response.write(b"data: " + json.dumps(last).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(
                b"data: " + json.dumps({**head, "choices": [], "usage": usage}).encode() + b"\n\n"
            )
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


# --- the platform ------------------------------------------------------------------------


def modelserve(name: str, url: str, served: str) -> dict[str, Any]:
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}},
        "spec": {"runtime": "external", "model": {"servedName": served}, "external": {"url": url}},
    }


def token(subject: str) -> str:
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    return signer.sign(subject, teams=("nlp",))


def client(gateway: str, subject: str = "alice", base: str = "/v1") -> Any:
    """The `openai` client, its answers untyped here: the SDK's unions of every event
    and item type would need a narrowing at each use."""
    return openai.OpenAI(
        base_url=gateway + base, api_key=token(subject), timeout=180, max_retries=0
    )


@pytest.fixture(scope="module")
def llama(testbed_dir: Path) -> Iterator[LlamaServer]:
    server = start_llama_server(
        testbed_dir / "responses-llama",
        parallel=2,
        context=4096,
        # The served name: the operator's probe finds it in /v1/models.
        options=["--alias", SMOL],
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tools() -> Iterator[ToolServer]:
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
    llama: LlamaServer,
    tools: ToolServer,
) -> Iterator[str]:
    for body in (
        modelserve("rs-smollm2", llama.url, SMOL),
        modelserve("rs-tooling", tools.url, TOOLING),
    ):
        crds.kubectl("apply", "-n", cluster_namespace, "-f", "-", stdin=yaml.safe_dump(body))
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "responses-tests-admin-password",
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_CONTRACT_URL": module_contract.url,
    }
    with service_on_fresh_schema(
        "gateway", database_url, testbed_dir / "logs", settings, prefix="gateway_responses"
    ) as service:

        def routed() -> bool:
            headers = {"Authorization": f"Bearer {token('alice')}"}
            answers = [
                httpx.post(
                    f"{service.url}/v1/responses",
                    json={"model": model, "input": "Hi", "max_output_tokens": 1},
                    headers=headers,
                    timeout=60,
                )
                for model in (TOOLING, SMOL)
            ]
            return all(answer.status_code == 200 for answer in answers)

        wait_for(routed, timeout=120, what="the gateway to route both servers")
        yield service.url


def requests_counted(gateway: str, model: str, status: str = "200") -> float:
    return metric(
        gateway,
        "modelserve_gateway_requests_total",
        model=model,
        route="/v1/responses",
        status=status,
    )


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_the_openai_client_gets_a_response_from_llama_server(gateway: str) -> None:
    counted = requests_counted(gateway, SMOL)
    out_before = metric(
        gateway, "modelserve_gateway_tokens_total", user="rita", model=SMOL, direction="out"
    )
    response = client(gateway, "rita").responses.create(
        model=SMOL,
        instructions="Answer in one word.",
        input="What is the capital of France?",
        max_output_tokens=6,
        temperature=0,
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status in ("completed", "incomplete")
    assert response.model == SMOL
    assert response.output[0].type == "message"
    assert response.output_text  # the client's own convenience, over output_text parts
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and 0 < usage.output_tokens <= 6
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    # Counted as a request of /v1/responses, its tokens as the user's.
    wait_for(
        lambda: requests_counted(gateway, SMOL) == counted + 1,
        timeout=10,
        what="the request to be counted",
    )
    wait_for(
        lambda: (
            metric(
                gateway, "modelserve_gateway_tokens_total", user="rita", model=SMOL, direction="out"
            )
            == out_before + usage.output_tokens
        ),
        timeout=10,
        what="its tokens to be counted",
    )


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_the_openai_client_streams_a_response_from_llama_server(gateway: str) -> None:
    stream = client(gateway).responses.create(
        model=SMOL, input="Say hello.", max_output_tokens=6, temperature=0, stream=True
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert "response.output_text.delta" in kinds and "response.output_text.done" in kinds
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert final.output_text == deltas and deltas
    assert final.usage is not None and final.usage.output_tokens > 0
    # The SDK's own accumulating helper reads the same events. (Its get_final_response
    # wants `response.completed`: a cut answer ends with `response.incomplete`, as
    # OpenAI's does, which it passes on as the last event.)
    with client(gateway).responses.stream(model=SMOL, input="Hi", max_output_tokens=4) as helper:
        seen = list(helper)
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert seen[-1].type in ("response.completed", "response.incomplete")
    assert seen[-1].response.output_text == text


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_a_conversation_with_a_function_call_and_its_output_reaches_llama_server(
    gateway: str,
) -> None:
    response = client(gateway).responses.create(
        model=SMOL,
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "type": "function_call",
                "call_id": CALL["id"],
                "name": CALL["name"],
                "arguments": CALL["arguments"],
            },
            {"type": "function_call_output", "call_id": CALL["id"], "output": "sunny, 21 C"},
        ],
        tools=[TOOL],
        max_output_tokens=8,
        temperature=0,
    )
    assert response.status in ("completed", "incomplete")
    assert response.output_text


@pytest.mark.kube
@pytest.mark.postgres
def test_a_function_call_of_the_model_is_a_function_call_item(
    gateway: str, tools: ToolServer
) -> None:
    before = len(tools.requests)
    response = client(gateway).responses.create(
        model=TOOLING,
        input="What is the weather in Paris?",
        tools=[TOOL],
        tool_choice="required",
    )
    sent = tools.requests[before:]
    assert len(sent) == 1
    assert sent[0]["tools"] == [CHAT_TOOL] and sent[0]["tool_choice"] == "required"
    assert sent[0]["messages"] == [{"role": "user", "content": "What is the weather in Paris?"}]
    [item] = response.output
    assert item.type == "function_call"
    assert (item.call_id, item.name, item.arguments) == (
        CALL["id"],
        CALL["name"],
        CALL["arguments"],
    )
    assert response.usage is not None and response.usage.total_tokens == 27
    # Streamed: the call's arguments in pieces, then whole.
    events = list(
        client(gateway).responses.create(
            model=TOOLING,
            input="Weather?",
            tools=[TOOL],
            stream=True,
        )
    )
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(pieces) == CALL["arguments"]
    done = [e for e in events if e.type == "response.output_item.done"]
    assert len(done) == 1 and done[0].item.type == "function_call"
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output[0].call_id == CALL["id"]
    assert final.response.usage is not None and final.response.usage.output_tokens == 7


@pytest.mark.kube
@pytest.mark.postgres
def test_what_is_not_supported_is_a_400_naming_it(gateway: str) -> None:
    for extra, param in (
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"background": True}, "background"),
        ({"store": True}, "store"),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            client(gateway).responses.create(model=TOOLING, input="Hi", **extra)
        assert refused.value.status_code == 400
        assert isinstance(refused.value.body, dict) and refused.value.body["param"] == param
    counted = requests_counted(gateway, "", "400")
    answer = httpx.post(
        f"{gateway}/v1/responses",
        json={"model": TOOLING, "input": 5},
        headers={"Authorization": f"Bearer {token('alice')}"},
    )
    assert answer.status_code == 400 and error_of(answer)["param"] == "input"
    assert requests_counted(gateway, "", "400") == counted + 1


@pytest.mark.kube
@pytest.mark.postgres
def test_the_caller_must_sign_in_and_may_use_a_servers_own_path(
    gateway: str, crds: KubeCluster, cluster_namespace: str
) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway + "/v1", api_key="nope", max_retries=0).responses.create(
            model=TOOLING, input="Hi"
        )
    uid = crds.get_json("ms", "rs-tooling", "-n", cluster_namespace)["metadata"]["uid"]
    answer = httpx.post(
        f"{gateway}/{uid}/v1/responses",
        json={"input": "Weather?", "tools": [TOOL]},
        headers={"Authorization": f"Bearer {token('alice')}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == TOOLING and body["output"][0]["name"] == "get_weather"
    assert (
        metric(gateway, "modelserve_gateway_requests_total", route="/{server_id}/v1/responses") >= 1
    )


@pytest.mark.kube
@pytest.mark.postgres
def test_a_budget_scales_a_response_as_it_scales_a_chat_completion(
    gateway: str, tools: ToolServer
) -> None:
    before = len(tools.requests)
    scaling = {"budget": 3, "algorithm": "self-consistency", "scaling_trace": True}
    raw = client(gateway).responses.with_raw_response.create(
        model=TOOLING, input="What is 2 + 3?", extra_body=scaling
    )
    assert "x-modelserve-unscaled" not in raw.headers
    response = raw.parse()
    sent = tools.requests[before:]
    assert len(sent) == 3  # the candidates
    assert not set(scaling) & set(sent[0])  # the gateway's fields, never the server's
    assert response.output_text == "It is 5"
    trace = response.to_dict()["scaling"]
    assert trace["algorithm"] == "self-consistency" and trace["budget"] == 3
    # With tools it is answered unscaled, and says why, as a chat completion is.
    before = len(tools.requests)
    raw = client(gateway).responses.with_raw_response.create(
        model=TOOLING,
        input="Weather?",
        tools=[TOOL],
        extra_body={"budget": 3, "algorithm": "self-consistency"},
    )
    assert raw.headers["x-modelserve-unscaled"] == "tools"
    assert len(tools.requests[before:]) == 1
    assert raw.parse().output[0].type == "function_call"
