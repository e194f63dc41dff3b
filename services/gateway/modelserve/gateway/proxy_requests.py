"""What a request to the OpenAI proxy is, before anything is sent: its operation, its
body read and checked, and its target found (by `model`, or by a server's id).

Every failure here is an `OpenAIError` for the client: 400 for a malformed body (not
JSON, not an object, or not of the operation's shape: `openai_requests`), 413 for one
too large, 404/403/503 for a target that is unknown, not the caller's or not ready, and
404 for an operation the target's runtime does not serve (`not_served`).

Besides the three operations every runtime serves, the proxy forwards the Responses API
(translated into a chat completion: `responses`) and passes a few of vLLM's and
llama-server's own endpoints through (rerank, score, tokenize, detokenize, audio
transcriptions), the runtimes that lack one refused before anything is sent.
"""

from __future__ import annotations

import dataclasses
import email.policy
import json
from email.parser import BytesParser
from typing import Any, Protocol

from fastapi import Request

from modelserve.common.modelserve import Runtime
from modelserve.common.tokens import Claims
from modelserve.gateway.asgi import ExchangeResponse
from modelserve.gateway.openai_errors import OpenAIError, model_not_found
from modelserve.gateway.openai_requests import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    PassThroughRequest,
    ResponsesRequest,
    Shape,
    ShapeError,
    check_shape,
)
from modelserve.gateway.responses.translated import RESPONSES_TRANSLATION
from modelserve.gateway.routing import Lookup, RouteTable, Target, Unknown

# A server's own paths start with its id; metrics label them with this template.
SERVER_PREFIX = "/{server_id}"


class Translation(Protocol):
    """An operation of another API that the proxy sends as a chat completion."""

    def request(self, payload: dict[str, Any], *, ask_usage: bool) -> dict[str, Any]:
        """The chat completion of a request (checked of the operation's shape); a stream
        asks the model server for its usage when `ask_usage`
        (GATEWAY_INJECT_STREAM_USAGE)."""

    def response(self, inner: ExchangeResponse, payload: dict[str, Any]) -> ExchangeResponse:
        """`inner`, the chat completion's response, as the answer to `payload`."""


# A model server's answers that mean "I do not serve this path" (llama-server answers
# 501 to /v1/rerank unless started with --reranking, and to audio for a text model).
NOT_SERVED_STATUSES = frozenset({404, 405, 501})


@dataclasses.dataclass(frozen=True)
class Operation:
    """One OpenAI operation the proxy forwards."""

    route: str  # the gateway's route, as metrics label it
    path: str  # appended to the endpoint's OpenAI base URL (…/v1), or its root
    shape: Shape  # what its body must be (besides `model`)
    streams: bool = True
    scalable: bool = False  # inference-time scaling applies (chat completions)
    prompt_lists: bool = False  # `prompt` may be a list of prompts (`prompt_lists`)
    # A pass-through of an endpoint only some runtimes serve: those (None: any), and a
    # model server's 404/405/501 to it is the client's clear 404 (`not_served`).
    runtimes: frozenset[Runtime] | None = None
    optional: bool = False
    from_root: bool = False  # `path` is under the server's root, not its /v1
    multipart: bool = False  # a form (a file and its fields), passed on as it came
    translation: Translation | None = None  # sent as a chat completion (`responses`)

    def on_server(self) -> Operation:
        """The same operation on a server's own path (`/{server_id}/v1/…`)."""
        return dataclasses.replace(self, route=SERVER_PREFIX + self.route)

    @property
    def name(self) -> str:
        """The operation as the client named it: its route under /v1."""
        return self.route.removeprefix(SERVER_PREFIX)


CHAT = Operation("/v1/chat/completions", "/chat/completions", ChatRequest, scalable=True)
COMPLETIONS = Operation("/v1/completions", "/completions", CompletionRequest, prompt_lists=True)
EMBEDDINGS = Operation("/v1/embeddings", "/embeddings", EmbeddingRequest, streams=False)
# Sent as a chat completion, so scaling applies as it does to chat (`responses`).
RESPONSES = Operation(
    "/v1/responses",
    "/chat/completions",
    ResponsesRequest,
    scalable=True,
    translation=RESPONSES_TRANSLATION,
)


def passed_through(
    route: str,
    path: str,
    *,
    runtimes: frozenset[Runtime] | None = None,
    from_root: bool = False,
    multipart: bool = False,
) -> Operation:
    """An endpoint that some runtimes serve, passed on as it came (never streamed)."""
    return Operation(
        route,
        path,
        PassThroughRequest,
        streams=False,
        optional=True,
        runtimes=runtimes,
        from_root=from_root,
        multipart=multipart,
    )


RERANK = passed_through("/v1/rerank", "/rerank")
# llama-server has no /v1/score.
SCORE = passed_through("/v1/score", "/score", runtimes=frozenset({Runtime.VLLM, Runtime.EXTERNAL}))
# vLLM and llama-server serve these at their root, not under /v1.
TOKENIZE = passed_through("/v1/tokenize", "/tokenize", from_root=True)
DETOKENIZE = passed_through("/v1/detokenize", "/detokenize", from_root=True)
# The same at the gateway's root too, where a vLLM user's client calls them.
ROOT_TOKENIZE = passed_through("/tokenize", "/tokenize", from_root=True)
ROOT_DETOKENIZE = passed_through("/detokenize", "/detokenize", from_root=True)
TRANSCRIPTIONS = passed_through("/v1/audio/transcriptions", "/audio/transcriptions", multipart=True)


def not_served(operation: Operation, target: Target, status: int | None = None) -> OpenAIError:
    """The clear 404 of an operation the target's model server does not serve."""
    why = (
        f"its model server answered {status} to {operation.path}"
        if status is not None
        else f"its runtime ({target.runtime}) has no {operation.path}"
    )
    return OpenAIError(
        404,
        f"the model {target.served_name!r} does not serve {operation.name}: {why}",
        code="endpoint_not_supported",
        model=target.served_name,
    )


def check_served(operation: Operation, target: Target) -> None:
    """Refuses, before anything is sent, an operation the target's runtime lacks."""
    if operation.runtimes is not None and target.runtime not in operation.runtimes:
        raise not_served(operation, target)


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


def parse_body(
    body: bytes,
    operation: Operation,
    *,
    model_required: bool = True,
    content_type: str | None = None,
) -> dict[str, Any]:
    """The request as a JSON object of the operation's shape (a form's text fields, for
    a multipart one), or a 400. Without `model_required`, `model` may be absent (a
    server's own path fills it in)."""
    if operation.multipart:
        payload: Any = form_fields(body, content_type)
    else:
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


def form_fields(body: bytes, content_type: str | None) -> dict[str, str]:
    """The text fields of a multipart form (its files left out): what the gateway reads
    of it is `model`; the form itself goes on as it came."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise invalid(
            "the request body must be multipart/form-data (the file and its fields)",
            code="invalid_content_type",
        )
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise invalid("the multipart form could not be read", code="invalid_form")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        value = part.get_payload(decode=True)
        fields[name] = value.decode(errors="replace") if isinstance(value, bytes) else ""
    return fields


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
    """The most tokens the request may generate per answer, as its model server reads it:
    llama.cpp's own `n_predict` comes before `max_tokens` (a negative one is no limit, as
    a request that names none)."""
    if "n_predict" in payload:
        value = payload["n_predict"]
    else:
        value = payload.get("max_completion_tokens", payload.get("max_tokens"))
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def answers_per_prompt(payload: dict[str, Any]) -> int:
    """How many answers the model server generates for each prompt: `n`, or a
    completion's `best_of` when larger (both 1 to 128, checked with the request's shape)."""
    copies = 1
    for field in ("n", "best_of"):
        value = payload.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > copies:
            copies = value
    return copies
