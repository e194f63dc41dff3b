"""A chat completion's answer as a Response object.

The first choice's message becomes a `message` output item with one `output_text` part
(when it has content), its tool calls `function_call` items (their `call_id` the chat
call's id, which a later `function_call_output` names); `finish_reason: length` makes
the Response `incomplete` (`max_output_tokens`). The Response repeats the request's
settings (`instructions`, `tools`, `text`, ...), as OpenAI's does; `output_text`, the
text of every output_text part, is the client's to add (the `openai` client does).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

# Echoed from the request into the Response, with OpenAI's defaults when absent.
_ECHOED: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "temperature": None,
    "top_p": None,
    "tool_choice": "auto",
    "tools": [],
    "parallel_tool_calls": True,
    "text": {"format": {"type": "text"}},
    "metadata": {},
    "user": None,
    "truncation": "disabled",
}


def new_id(prefix: str) -> str:
    """An id of OpenAI's form (`resp_…`, `msg_…`, `fc_…`); never looked up again."""
    return f"{prefix}_{secrets.token_hex(16)}"


IdMaker = Callable[[str], str]


def response_object(
    request: dict[str, Any],
    *,
    response_id: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """A Response, `request` (the Responses request) giving its settings."""
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": (
            {"reason": incomplete_reason} if incomplete_reason is not None else None
        ),
        "model": request.get("model"),
        "output": output,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "usage": usage,
    }
    for field, default in _ECHOED.items():
        value = request.get(field)
        response[field] = value if value is not None else default
    if status == "completed":
        response["completed_at"] = int(time.time())
    return response


def response_usage(chat_usage: Any) -> dict[str, Any] | None:
    """Chat's `usage` in the Response's names."""
    if not isinstance(chat_usage, dict):
        return None
    given = chat_usage.get("prompt_tokens")
    taken = chat_usage.get("completion_tokens")
    prompt = given if isinstance(given, int) else 0
    completion = taken if isinstance(taken, int) else 0
    details = chat_usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached if isinstance(cached, int) else 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [text_part(text)] if status == "completed" else [],
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response_from_chat(
    request: dict[str, Any], answer: dict[str, Any], new: IdMaker = new_id
) -> dict[str, Any]:
    """The Response of a whole chat completion `answer` to `request`."""
    choices = answer.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, dict) else None
    message = message if isinstance(message, dict) else {}
    output: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(message_item(new("msg"), content))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        call_id = call.get("id") or new("call")
        output.append(
            call_item(new("fc"), call_id, function.get("name", ""), function.get("arguments", ""))
        )
    length = choice.get("finish_reason") == "length" if isinstance(choice, dict) else False
    created = answer.get("created")
    response = response_object(
        request,
        response_id=new("resp"),
        created_at=created if isinstance(created, int) else int(time.time()),
        status="incomplete" if length else "completed",
        output=output,
        usage=response_usage(answer.get("usage")),
        incomplete_reason="max_output_tokens" if length else None,
    )
    if "scaling" in answer:
        # The trace of inference-time scaling, when asked (`scaling_trace`).
        response["scaling"] = answer["scaling"]
    return response
