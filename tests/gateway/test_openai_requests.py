"""The OpenAI request shapes as pure logic: bodies in, the first field at fault out."""

from __future__ import annotations

from typing import Any

import pytest

from modelserve.gateway.openai_requests import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    Shape,
    ShapeError,
    check_shape,
    param_of,
    request_body,
)

HI = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("shape", "body"),
    [
        (ChatRequest, {"messages": HI}),
        (ChatRequest, {"messages": HI, "max_tokens": None, "temperature": 0, "stop": ["\n"]}),
        (
            ChatRequest,
            {
                "messages": [
                    {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                    {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
                    {"role": "ipython", "content": "42"},  # a runtime's own role
                ],
                "top_k": "anything",  # unknown fields are the model server's business
                "logprobs": True,
                "top_logprobs": 20,
                "seed": -(2**63),
            },
        ),
        (CompletionRequest, {"prompt": "x", "max_tokens": 0, "echo": True, "logprobs": 5}),
        (CompletionRequest, {"prompt": [[1, 2], [3]], "n": 128}),
        (CompletionRequest, {"prompt": [], "temperature": 2.0}),
        (EmbeddingRequest, {"input": ["a", "b"], "encoding_format": "base64"}),
    ],
)
def test_requests_of_openais_shape_pass(shape: Shape, body: dict[str, Any]) -> None:
    check_shape(body, shape)


@pytest.mark.parametrize(
    ("shape", "body", "param", "code"),
    [
        (ChatRequest, {}, "messages", "missing_required_parameter"),
        (ChatRequest, {"messages": "hi"}, "messages", "invalid_type"),
        (ChatRequest, {"messages": []}, "messages", "invalid_value"),
        (ChatRequest, {"messages": [1]}, "messages[0]", "invalid_type"),
        (
            ChatRequest,
            {"messages": [{"content": "x"}]},
            "messages[0].role",
            "missing_required_parameter",
        ),
        (ChatRequest, {"messages": [{"role": ""}]}, "messages[0].role", "invalid_value"),
        (ChatRequest, {"messages": [{"role": 5}]}, "messages[0].role", "invalid_type"),
        (
            ChatRequest,
            {"messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "invalid_value",
        ),
        (ChatRequest, {"messages": HI, "max_tokens": "5"}, "max_tokens", "invalid_type"),
        (ChatRequest, {"messages": HI, "max_tokens": 5.0}, "max_tokens", "invalid_type"),
        (ChatRequest, {"messages": HI, "max_tokens": True}, "max_tokens", "invalid_type"),
        (ChatRequest, {"messages": HI, "max_tokens": 0}, "max_tokens", "invalid_value"),
        (ChatRequest, {"messages": HI, "max_tokens": 2**31}, "max_tokens", "invalid_value"),
        (ChatRequest, {"messages": HI, "n": 129}, "n", "invalid_value"),
        (ChatRequest, {"messages": HI, "temperature": -0.1}, "temperature", "invalid_value"),
        (ChatRequest, {"messages": HI, "temperature": "1"}, "temperature", "invalid_type"),
        (ChatRequest, {"messages": HI, "stream": 1}, "stream", "invalid_type"),
        (ChatRequest, {"messages": HI, "stop": [1]}, "stop", "invalid_value"),
        (ChatRequest, {"messages": HI, "seed": 2**63}, "seed", "invalid_value"),
        (ChatRequest, {"messages": HI, "model": 5}, "model", "invalid_type"),
        (CompletionRequest, {"prompt": {"text": "x"}}, "prompt", "invalid_value"),
        (CompletionRequest, {"prompt": [True]}, "prompt", "invalid_value"),
        (CompletionRequest, {"prompt": [-1]}, "prompt", "invalid_value"),
        (CompletionRequest, {"prompt": "x", "logprobs": True}, "logprobs", "invalid_type"),
        (EmbeddingRequest, {"input": [["a"]]}, "input", "invalid_value"),
        (
            EmbeddingRequest,
            {"input": "a", "encoding_format": "hex"},
            "encoding_format",
            "invalid_value",
        ),
    ],
)
def test_the_first_field_at_fault_is_named(
    shape: Shape, body: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(ShapeError) as raised:
        check_shape(body, shape)
    assert (raised.value.param, raised.value.code) == (param, code)
    assert f"'{param}'" in raised.value.message


def test_fields_are_named_as_openai_names_them() -> None:
    assert param_of(("messages", 0, "content", 2, "text")) == "messages[0].content[2].text"
    assert param_of(()) == ""


def test_the_openapi_request_body_has_no_references_left() -> None:
    body = request_body(ChatRequest)["requestBody"]["content"]["application/json"]["schema"]
    assert "$ref" not in str(body) and "$defs" not in body
    assert body["required"][0] == "model"
    assert body["properties"]["messages"]["items"]["required"] == ["role"]
    loose = request_body(ChatRequest, model_required=False)["requestBody"]
    assert "model" not in loose["content"]["application/json"]["schema"]["required"]
