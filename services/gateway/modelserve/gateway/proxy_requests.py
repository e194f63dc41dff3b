"""What a request to the OpenAI proxy is, before anything is sent: its operation, its
body read and checked, and its target found (by `model`, or by a server's id).

Every failure here is an `OpenAIError` for the client: 400 for a malformed body (not
JSON, not an object, or not of the operation's shape: `openai_requests`), 413 for one
too large, 404/403/503 for a target that is unknown, not the caller's or not ready.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fastapi import Request

from modelserve.common.tokens import Claims
from modelserve.gateway.openai_errors import OpenAIError, model_not_found
from modelserve.gateway.openai_requests import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    Shape,
    ShapeError,
    check_shape,
)
from modelserve.gateway.routing import Lookup, RouteTable, Target, Unknown

# A server's own paths start with its id; metrics label them with this template.
SERVER_PREFIX = "/{server_id}"


@dataclasses.dataclass(frozen=True)
class Operation:
    """One OpenAI operation the proxy forwards."""

    route: str  # the gateway's route, as metrics label it
    path: str  # appended to the endpoint's OpenAI base URL (…/v1)
    shape: Shape  # what its body must be (besides `model`)
    streams: bool = True
    scalable: bool = False  # inference-time scaling applies (chat completions)
    prompt_lists: bool = False  # `prompt` may be a list of prompts (`prompt_lists`)

    def on_server(self) -> Operation:
        """The same operation on a server's own path (`/{server_id}/v1/…`)."""
        return dataclasses.replace(self, route=SERVER_PREFIX + self.route)


CHAT = Operation("/v1/chat/completions", "/chat/completions", ChatRequest, scalable=True)
COMPLETIONS = Operation("/v1/completions", "/completions", CompletionRequest, prompt_lists=True)
EMBEDDINGS = Operation("/v1/embeddings", "/embeddings", EmbeddingRequest, streams=False)


def invalid(
    message: str, *, param: str | None = None, code: str = "invalid_request"
) -> OpenAIError:
    return OpenAIError(400, message, code=code, param=param)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to be over `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise invalid("the Content-Length header is not a number")
        if int(declared) > limit:
            raise OpenAIError(413, f"the request body is over {limit} bytes", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise OpenAIError(413, f"the request body is over {limit} bytes", code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes, operation: Operation, *, model_required: bool = True) -> dict[str, Any]:
    """The request as a JSON object of the operation's shape, or a 400. Without
    `model_required`, `model` may be absent (a server's own path fills it in)."""
    try:
        # NaN and Infinity are Python's, not JSON's: no model server would read them.
        payload = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise invalid("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise invalid("the request body must be a JSON object", code="invalid_json")
    model = payload.get("model")
    if (model_required or "model" in payload) and (not isinstance(model, str) or not model):
        raise invalid(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    try:
        check_shape(payload, operation.shape)
    except ShapeError as error:
        raise invalid(error.message, param=error.param, code=error.code) from None
    if payload.get("stream") and not operation.streams:
        raise invalid(f"{operation.route} does not stream", param="stream")
    return payload


def compact(payload: dict[str, Any]) -> bytes:
    """A request the gateway changed, as JSON without spaces for its model server."""
    return json.dumps(payload, separators=(",", ":")).encode()


def server_for(table: RouteTable, server_id: str, claims: Claims) -> Target:
    """The server of its own paths (ready or not). An id names one server, so unlike a
    model name, one the caller may not use is forbidden (403), as for /auth/verify."""
    target = table.server(server_id)
    if target is None and not table.synced:
        raise OpenAIError(
            503,
            "the gateway is still loading its routes; retry in 1 s",
            code="routes_loading",
            headers={"Retry-After": "1"},
        )
    if target is None:
        raise OpenAIError(404, f"no server has the id {server_id!r}", code="server_not_found")
    if not target.may_use(claims):
        raise OpenAIError(403, f"you may not use the server {server_id}", code="forbidden")
    return target


def routed(found: Lookup, model: str) -> Target:
    """The target of a lookup, or the error its client gets."""
    if isinstance(found, Target):
        return found
    if isinstance(found, Unknown):
        raise model_not_found(model)
    raise OpenAIError(
        503,
        f"{found.message}; retry in {found.retry_after} s",
        code="model_not_ready",
        headers={"Retry-After": str(found.retry_after)},
        model=model,
    )


def max_tokens(payload: dict[str, Any]) -> int | None:
    value = payload.get("max_completion_tokens", payload.get("max_tokens"))
    return value if isinstance(value, int) and value >= 0 else None
