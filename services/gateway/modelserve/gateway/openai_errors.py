"""Errors under /v1 (and a server's own /{server_id}/v1) in OpenAI's shape; everywhere
else the platform's.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "model",
               "code": "model_not_found"}}

OpenAI's SDKs read `error.message` and map the status to an exception class
(401 AuthenticationError, 404 NotFoundError, 429 RateLimitError, ...), so every error
a /v1 route can produce goes through here: the proxy's own (`OpenAIError`), 401 and 403
from authentication (`ApiError`), FastAPI's 404/405/422, and anything unexpected (500,
without a traceback). Other routes keep the handlers `common.errors` installed.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from modelserve.common.errors import internal_error
from modelserve.common.request_ids import HEADER, current_request_id
from modelserve.gateway.metrics import GatewayMetrics

OPENAI_PREFIX = "/v1"
# A server's own OpenAI paths: its id, then /v1. Any first segment counts, not only the
# UUIDs the routes take: a client with a wrong id in its base URL is an OpenAI client too.
_SERVER_OPENAI = re.compile(r"/[^/]+/v1(/|$)")

# OpenAI's error types by status, for errors that do not name one.
# A bad key and an unknown model, file or path are `invalid_request_error` as OpenAI
# answers them (its codes: invalid_api_key, model_not_found); the others are named as
# the openai client's exception classes are.
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error shape, for the OpenAPI schema."""

    error: ErrorDetail


class OpenAIError(HTTPException):
    """An error of the OpenAI-compatible routes. `model` labels its metrics (a served
    name the route table knows, or "")."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        model: str = "",
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.message = message
        self.code = code
        self.type = type or error_type(status)
        self.param = param
        self.model = model


def model_not_found(model: str) -> OpenAIError:
    """OpenAI's answer for a model that does not exist, or that the caller may not use."""
    return OpenAIError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )


def error_type(status: int) -> str:
    return _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses` of a route under /v1: its errors, in OpenAI's shape."""
    return {status: {"model": ErrorBody, "description": error_type(status)} for status in statuses}


# What every OpenAI route may answer besides its success (FastAPI's 422 is a 400 here).
OPENAI_ERRORS = error_responses(400, 401, 403, 404, 429, 503)
# ... and what a proxied one adds: a body too large, a model server that failed or is slow.
PROXIED_ERRORS = error_responses(400, 401, 403, 404, 413, 429, 502, 503, 504)


def openai_body(
    message: str, *, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def openai_response(error: OpenAIError) -> JSONResponse:
    body = openai_body(error.message, type=error.type, code=error.code, param=error.param)
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


# Paths outside /v1 that answer as OpenAI's: vLLM's /tokenize and /detokenize.
ROOT_OPENAI_PATHS = frozenset({"/tokenize", "/detokenize"})


def _is_openai(request: Request) -> bool:
    path: str = request.scope["path"]
    if path in ROOT_OPENAI_PATHS:
        return True
    if path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/"):
        return True
    return _SERVER_OPENAI.match(path) is not None


def _route(request: Request) -> str:
    # The template without convertors ("/{server_id}/v1/…"), as the proxy labels routes.
    route = request.scope.get("route")
    return str(getattr(route, "path_format", "")) or "other"


def _count(request: Request, error: OpenAIError) -> None:
    metrics: GatewayMetrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.requests.labels(error.model, _route(request), str(error.status_code)).inc()


def _as_openai(error: Exception) -> OpenAIError:
    if isinstance(error, OpenAIError):
        return error
    if isinstance(error, RequestValidationError):
        problems = [
            ("body" if not e["loc"] else ".".join(str(p) for p in e["loc"][1:]), e["msg"])
            for e in error.errors()
        ]
        message = "; ".join(f"{field}: {problem}" for field, problem in problems)
        return OpenAIError(
            400,
            message or "invalid request",
            code="invalid_request",
            param=problems[0][0] if problems else None,
        )
    if isinstance(error, HTTPException):
        code = getattr(error, "code", None)
        return OpenAIError(
            error.status_code, str(error.detail), code=code, headers=dict(error.headers or {})
        )
    # Answered from outside the request-id middleware: the id goes in the header here.
    request_id = current_request_id()
    return OpenAIError(
        500,
        f"the gateway failed on this request (request id {request_id})",
        code="internal_error",
        headers={HEADER: request_id} if request_id is not None else None,
    )


async def _call(handler: Any, request: Request, error: Exception) -> Response:
    response = handler(request, error)
    if inspect.isawaitable(response):
        response = await response
    assert isinstance(response, Response)
    return response


def _by_path(platform: Callable[..., Any]) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A handler that answers in OpenAI's shape under /v1, and with `platform` elsewhere."""

    async def handle(request: Request, error: Exception) -> Response:
        if not _is_openai(request):
            return await _call(platform, request, error)
        openai = _as_openai(error)
        _count(request, openai)
        return openai_response(openai)

    return handle


def install_openai_errors(app: FastAPI) -> None:
    """Route errors by path: OpenAI's shape under /v1 and /{server_id}/v1, the installed
    handlers elsewhere."""
    for error_class in (HTTPException, RequestValidationError):
        app.add_exception_handler(error_class, _by_path(app.exception_handlers[error_class]))
    app.add_exception_handler(Exception, _by_path(internal_error))
