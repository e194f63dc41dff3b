"""A Responses request as the chat completion that answers it.

`input` (a string, or a list of messages and items) becomes `messages`, `instructions`
a system message before them; `max_output_tokens` becomes `max_tokens`; `text.format`
becomes `response_format`; function tools and `tool_choice` become chat's; a
`function_call` input item becomes an assistant message with `tool_calls`, and a
`function_call_output` a `tool` message. Fields the Responses API has and the gateway
cannot honour (stored state, built-in tools, background runs) are refused with a 400
that names them: never ignored, so no client gets a different API without a word. Any
field the Responses API does not define passes on to the chat completion as it is, as
chat's own unknown fields do (a vendor's `top_k`, the gateway's `budget`).
"""

from __future__ import annotations

from typing import Any

from modelserve.gateway.openai_errors import OpenAIError
from modelserve.gateway.openai_requests import ChatRequest, ShapeError, check_shape

# Translated into the chat completion (or read for the Response only).
_TRANSLATED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "user",
        "metadata",
        "store",
        "truncation",
        "include",
        "reasoning",
        "service_tier",
        "stream_options",
    }
)
# Fields whose every non-null value needs what the gateway does not have: a store of
# earlier responses and conversations, prompt templates, runs that outlive the request.
_REFUSED = {
    "previous_response_id": "responses are not stored: send the whole conversation in `input`",
    "conversation": "conversations are not stored: send the whole conversation in `input`",
    "prompt": "stored prompt templates are not supported: send the prompt in `input`",
    "background": "background responses are not supported: ask without `background`",
    "max_tool_calls": "the gateway runs no tools itself, so `max_tool_calls` has no meaning",
}
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
# A chat completion's own fields, which the translation writes from `input`: never taken
# from the request as they are.
_CHAT_OWN = ("messages",)


def refused(message: str, param: str, code: str = "unsupported_parameter") -> OpenAIError:
    return OpenAIError(400, message, code=code, param=param)


def chat_request(payload: dict[str, Any], *, ask_usage: bool = True) -> dict[str, Any]:
    """The chat completion of a Responses request (its shape checked already). A stream
    asks the model server for its usage unless `ask_usage` is False (model servers that
    refuse `stream_options`: GATEWAY_INJECT_STREAM_USAGE=false)."""
    _refuse_unsupported(payload)
    messages: list[dict[str, Any]] = []
    instructions = payload.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    messages.extend(chat_messages(payload["input"]))
    if not messages:
        raise refused("`input` holds no message", "input", "invalid_value")
    chat: dict[str, Any] = {"model": payload["model"], "messages": messages}
    chat.update((key, value) for key, value in payload.items() if key not in _TRANSLATED)
    for ours, theirs in (
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("user", "user"),
        ("parallel_tool_calls", "parallel_tool_calls"),
    ):
        if payload.get(ours) is not None:
            chat[theirs] = payload[ours]
    tools = payload.get("tools")
    if tools:
        chat["tools"] = [chat_tool(tool, index) for index, tool in enumerate(tools)]
    if payload.get("tool_choice") is not None:
        chat["tool_choice"] = chat_tool_choice(payload["tool_choice"])
    response_format = chat_response_format(payload.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    if payload.get("stream") is True:
        chat["stream"] = True
        # Responses' last event carries the usage, so it is asked of the model server.
        if ask_usage:
            chat["stream_options"] = {"include_usage": True}
    # What passed through is checked as a chat completion's fields are (`n` an integer of
    # 1 to 128, ...): the tokens held for it are read from them.
    try:
        check_shape(chat, ChatRequest)
    except ShapeError as error:
        raise refused(error.message, error.param, error.code) from None
    return chat


def _refuse_unsupported(payload: dict[str, Any]) -> None:
    for field, why in _REFUSED.items():
        value = payload.get(field)
        if value is not None and value is not False:  # 0 is no False here
            raise refused(f"`{field}` is not supported by this gateway: {why}", field)
    for field in _CHAT_OWN:
        if field in payload:
            raise refused(f"`{field}` is not a Responses field: the conversation is `input`", field)
    if payload.get("store") is True:
        raise refused(
            "`store: true` is not supported by this gateway: responses are not stored; "
            "send `store: false` or leave it out",
            "store",
        )
    if payload.get("truncation") not in (None, "disabled"):
        raise refused(
            "`truncation` may only be `disabled`: the gateway does not shorten a "
            "conversation to fit the model's context",
            "truncation",
        )
    if payload.get("include"):
        raise refused(
            "`include` is not supported by this gateway: it has none of the extra output it names",
            "include",
        )
    reasoning = payload.get("reasoning")
    if isinstance(reasoning, dict) and any(value is not None for value in reasoning.values()):
        raise refused(
            "`reasoning` is not supported by this gateway: it cannot set a model's "
            "reasoning effort or summaries",
            "reasoning",
        )


def chat_messages(given: Any) -> list[dict[str, Any]]:
    """`input` as chat messages: consecutive function calls are one assistant turn."""
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(given):
        kind = item.get("type", "message")
        param = f"input[{index}]"
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            call = {
                "id": _text(item, "call_id", param),
                "type": "function",
                "function": {
                    "name": _text(item, "name", param),
                    "arguments": _text(item, "arguments", param),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            content = output if isinstance(output, str) else _joined(output, f"{param}.output")
            call_id = _text(item, "call_id", param)
            messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
        else:
            raise refused(
                f"input items of type {kind!r} are not supported by this gateway (only "
                "messages, function_call and function_call_output)",
                f"{param}.type",
            )
    return messages


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise refused(
            f"Invalid value for '{param}.role': must be one of user, assistant, system, developer.",
            f"{param}.role",
            "invalid_value",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": _ROLES[role], "content": content}
    if not isinstance(content, list):
        raise refused(
            f"Invalid value for '{param}.content': must be a string or an array of parts.",
            f"{param}.content",
            "invalid_type",
        )
    parts = [_part(part, f"{param}.content[{i}]") for i, part in enumerate(content)]
    if all(part["type"] == "text" for part in parts):
        # One string: every runtime's chat template takes it, not all take text parts.
        return {"role": _ROLES[role], "content": "".join(part["text"] for part in parts)}
    return {"role": _ROLES[role], "content": parts}


def _part(part: Any, param: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        return {"type": "image_url", "image_url": {"url": part["image_url"]}}
    raise refused(
        f"content parts of type {kind!r} are not supported by this gateway (only "
        "input_text, output_text, and input_image with an image_url)",
        f"{param}.type",
    )


def _joined(parts: Any, param: str) -> str:
    """A function call's output given as parts: their text, joined."""
    if not isinstance(parts, list):
        raise refused(f"Invalid value for '{param}': must be a string.", param, "invalid_type")
    return "".join(_part(part, f"{param}[{i}]").get("text", "") for i, part in enumerate(parts))


def _text(item: dict[str, Any], field: str, param: str) -> str:
    value = item.get(field)
    if not isinstance(value, str):
        raise refused(
            f"Missing required parameter: '{param}.{field}'.",
            f"{param}.{field}",
            "missing_required_parameter",
        )
    return value


def chat_tool(tool: Any, index: int) -> dict[str, Any]:
    """A Responses function tool as chat's; any other kind (web_search, file_search,
    code_interpreter, mcp, ...) would need the gateway to run it: refused."""
    param = f"tools[{index}]"
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind != "function":
        raise refused(
            f"tools of type {kind!r} are not supported by this gateway: only function "
            "tools, which your code runs",
            f"{param}.type",
        )
    function: dict[str, Any] = {"name": _text(tool, "name", param)}
    for field in ("description", "parameters", "strict"):
        if tool.get(field) is not None:
            function[field] = tool[field]
    return {"type": "function", "function": function}


def chat_tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": _text(choice, "name", "tool_choice")}}
    raise refused(
        "`tool_choice` may be auto, none, required, or a function "
        '({"type": "function", "name": ...})',
        "tool_choice",
    )


def chat_response_format(text: Any) -> dict[str, Any] | None:
    """`text.format` as chat's `response_format` (None: plain text)."""
    if not isinstance(text, dict) or text.get("format") is None:
        return None
    given = text["format"]
    kind = given.get("type") if isinstance(given, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema: dict[str, Any] = {"name": _text(given, "name", "text.format")}
        for field in ("schema", "strict", "description"):
            if given.get(field) is not None:
                schema[field] = given[field]
        return {"type": "json_schema", "json_schema": schema}
    raise refused("`text.format.type` may be text, json_object or json_schema", "text.format.type")
