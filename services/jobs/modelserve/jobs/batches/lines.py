"""A batch's input file, line by line, as the items of its job (pure: no I/O).

Each line is `{"custom_id", "method": "POST", "url", "body"}`. A line that cannot be
sent (not JSON, JSON that PostgreSQL cannot keep, no custom_id, one seen before, another
url than the batch's endpoint, a body without a model or with another model than the
batch's) becomes an item that carries its error instead of a request: it fails without
reaching the gateway and is reported, line by line, in the batch's error file. The job
never fails for them."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Literal, get_args

from modelserve.jobs.files.transfers import LineTooLong

Endpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
ENDPOINTS: tuple[str, ...] = get_args(Endpoint)
CUSTOM_ID_MAX = 512
# The longest line: the gateway's default request body limit (GATEWAY_MAX_BODY_BYTES,
# 8 MiB), which a line's body cannot pass anyway; a longer line is `line_too_long`.
LINE_MAX_BYTES = 8 << 20
# Deeper JSON than any OpenAI request needs; PostgreSQL (jsonb) and Python's json both
# stop at some depth, and a line must never reach either limit.
DEPTH_MAX = 64


class TooManyRequests(Exception):
    """The file holds more requests than one batch may."""


def _refused(number: int, custom_id: Any, code: str, message: str) -> dict[str, Any]:
    return {
        "line": number,
        "custom_id": custom_id if isinstance(custom_id, str) else None,
        "error": {"code": code, "message": f"line {number}: {message}"},
    }


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def storable_text(text: str) -> bool:
    """Whether PostgreSQL can keep `text` (in text or jsonb): no NUL, no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unstorable(value: Any) -> str | None:
    """Why PostgreSQL's jsonb cannot keep parsed JSON `value` (None when it can): a string
    or key with a NUL or a lone surrogate, an infinite number, or nesting deeper than
    DEPTH_MAX."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        current, depth = pending.pop()
        if isinstance(current, str):
            if not storable_text(current):
                return "a string holds a NUL character (\\u0000) or a lone surrogate"
        elif isinstance(current, float):
            if not math.isfinite(current):
                return "a number is beyond a double's range"
        elif isinstance(current, dict | list):
            if depth > DEPTH_MAX:
                return f"it is nested deeper than {DEPTH_MAX} levels"
            if isinstance(current, dict):
                pending.extend((key, depth) for key in current)
                pending.extend((each, depth + 1) for each in current.values())
            else:
                pending.extend((each, depth + 1) for each in current)
    return None


def parse_line(raw: bytes) -> Any:
    """A line's JSON as PostgreSQL can keep it; ValueError otherwise (NaN, Infinity and
    numbers out of a double's range, NUL characters, lone surrogates, deep nesting)."""
    if b"\x00" in raw:
        raise ValueError("a NUL byte is in the line")
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"it is nested deeper than {DEPTH_MAX} levels") from None
    problem = unstorable(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def line_item(
    raw: bytes | LineTooLong, number: int, endpoint: str, seen: set[str]
) -> dict[str, Any]:
    """The item of input line `number` (1-based): the request to send, or its error.
    `seen` holds the custom_ids of the lines before it (this line's is added)."""
    if isinstance(raw, LineTooLong):
        return _refused(
            number,
            None,
            "line_too_long",
            f"the line has {raw.size} bytes, more than a batch line's limit of {raw.limit}",
        )
    try:
        request = parse_line(raw)
    except (ValueError, UnicodeDecodeError) as error:
        return _refused(number, None, "invalid_json", f"not JSON that can be kept ({error})")
    if not isinstance(request, dict):
        return _refused(number, None, "invalid_request", "a line is a JSON object")
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _refused(number, None, "missing_custom_id", "a request needs a `custom_id`")
    if len(custom_id) > CUSTOM_ID_MAX:
        return _refused(
            number, None, "invalid_custom_id", f"a custom_id has at most {CUSTOM_ID_MAX} characters"
        )
    if custom_id in seen:
        return _refused(
            number, custom_id, "duplicate_custom_id", f"the custom_id {custom_id!r} came before"
        )
    seen.add(custom_id)
    if request.get("method") != "POST":
        return _refused(number, custom_id, "invalid_method", '`method` must be "POST"')
    if request.get("url") != endpoint:
        return _refused(
            number,
            custom_id,
            "invalid_url",
            f"`url` is {repr(request.get('url'))[:200]}, and this batch's endpoint is {endpoint!r}",
        )
    body = request.get("body")
    if not isinstance(body, dict):
        return _refused(number, custom_id, "invalid_body", "`body` must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _refused(number, custom_id, "missing_model", "the `body` needs a `model`")
    if body.get("stream"):
        return _refused(number, custom_id, "invalid_body", "requests of a batch are not streamed")
    return {"line": number, "custom_id": custom_id, "url": endpoint, "body": body}


def one_model(item: dict[str, Any], first: tuple[int, str] | None) -> dict[str, Any]:
    """`item`, or its error when it names another model than `first` (the line number and
    model of the batch's first request that can be sent): a batch runs one model, as
    OpenAI's do, so that the engine's per-model cap and back-off hold for all of it."""
    model = item_model(item)
    if first is None or model is None or model == first[1]:
        return item
    line, expected = first
    return _refused(
        item["line"],
        item["custom_id"],
        "model_mismatch",
        f"the model {model[:200]!r} is not this batch's model {expected!r} (that of line "
        f"{line}, its first request): a batch's requests all name one model",
    )


async def batch_items(
    lines: AsyncIterable[bytes | LineTooLong], endpoint: str, max_requests: int
) -> AsyncIterator[dict[str, Any]]:
    """The items of an input file's lines (blank lines are skipped); TooManyRequests past
    `max_requests`. Every request names the model of the first one (`model_mismatch`
    otherwise)."""
    seen: set[str] = set()
    first: tuple[int, str] | None = None
    count = 0
    number = 0
    async for raw in lines:
        number += 1
        if isinstance(raw, bytes) and not raw.strip():
            continue
        count += 1
        if count > max_requests:
            raise TooManyRequests(f"the file holds more than {max_requests} requests")
        item = one_model(line_item(raw, number, endpoint, seen), first)
        model = item_model(item)
        if first is None and model is not None:
            first = (number, model)
        yield item


def item_model(item: dict[str, Any]) -> str | None:
    """The model an item's request names (None for a line in error)."""
    body = item.get("body")
    return str(body["model"]) if isinstance(body, dict) and "model" in body else None
