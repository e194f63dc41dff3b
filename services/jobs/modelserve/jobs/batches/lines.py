"""A batch's input file, line by line, as the items of its job (pure: no I/O).

Each line is `{"custom_id", "method": "POST", "url", "body"}`. A line that cannot be
sent (not JSON, no custom_id, one seen before, another url than the batch's endpoint, a
body without a model) becomes an item that carries its error instead of a request: it
fails without reaching the gateway and is reported, line by line, in the batch's error
file. The job never fails for them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Literal, get_args

Endpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
ENDPOINTS: tuple[str, ...] = get_args(Endpoint)
CUSTOM_ID_MAX = 512


class TooManyRequests(Exception):
    """The file holds more requests than one batch may."""


def _refused(number: int, custom_id: Any, code: str, message: str) -> dict[str, Any]:
    return {
        "line": number,
        "custom_id": custom_id if isinstance(custom_id, str) else None,
        "error": {"code": code, "message": f"line {number}: {message}"},
    }


def line_item(raw: bytes, number: int, endpoint: str, seen: set[str]) -> dict[str, Any]:
    """The item of input line `number` (1-based): the request to send, or its error.
    `seen` holds the custom_ids of the lines before it (this line's is added)."""
    try:
        request = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        return _refused(number, None, "invalid_json", f"not JSON ({error})")
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
            f"`url` is {request.get('url')!r}, and this batch's endpoint is {endpoint!r}",
        )
    body = request.get("body")
    if not isinstance(body, dict):
        return _refused(number, custom_id, "invalid_body", "`body` must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _refused(number, custom_id, "missing_model", "the `body` needs a `model`")
    if body.get("stream"):
        return _refused(number, custom_id, "invalid_body", "requests of a batch are not streamed")
    return {"line": number, "custom_id": custom_id, "url": endpoint, "body": body}


async def batch_items(
    lines: AsyncIterable[bytes], endpoint: str, max_requests: int
) -> AsyncIterator[dict[str, Any]]:
    """The items of an input file's lines (blank lines are skipped); TooManyRequests past
    `max_requests`."""
    seen: set[str] = set()
    count = 0
    number = 0
    async for raw in lines:
        number += 1
        if not raw.strip():
            continue
        count += 1
        if count > max_requests:
            raise TooManyRequests(f"the file holds more than {max_requests} requests")
        yield line_item(raw, number, endpoint, seen)


def item_model(item: dict[str, Any]) -> str | None:
    """The model an item's request names (None for a line in error)."""
    body = item.get("body")
    return str(body["model"]) if isinstance(body, dict) and "model" in body else None
