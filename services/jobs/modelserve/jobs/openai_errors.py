"""Errors of the jobs service's /v1 routes (OpenAI Files and Batches) in OpenAI's shape,
as the gateway answers its own /v1 routes:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "purpose",
               "code": "invalid_purpose"}}

OpenAI's SDKs read `error.message` and map the status to an exception class, and the
gateway passes these answers through unchanged. The routers of `files` and `batches` use
`OpenAIRoute`, which turns every error of their handlers and dependencies (an `ApiError`
from authentication, FastAPI's validation errors, a database or store that cannot be
reached: 503) into this shape. `install_openai_errors` does the same for what no route
handles, under /v1 (a path no route has: 404, a method it lacks: 405, an unexpected
failure: 500); the service's other routes keep the platform's shape."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from modelserve.common.database import DatabaseUnavailable
from modelserve.common.objects import StoreError

# OpenAI's error types by status.
# A bad key and an unknown model, file or path are `invalid_request_error` as OpenAI
# answers them (its codes: invalid_api_key, model_not_found); the others are named as
# the openai client's exception classes are.
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


_AGAIN = {"Retry-After": "1"}


def error_type(status: int) -> str:
    return _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


class OpenAIError(HTTPException):
    """An error of a /v1 route: its status, message, OpenAI `code` and `param`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.message = message
        self.code = code
        self.param = param


def openai_body(
    message: str, *, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def as_openai(error: Exception) -> OpenAIError:
    """Any error a /v1 route raises, as an OpenAIError (the platform's `ApiError` keeps
    its code; a validation error names its first field as `param`)."""
    if isinstance(error, OpenAIError):
        return error
    if isinstance(error, RequestValidationError):
        problems = [
            (".".join(str(part) for part in e["loc"][1:]) or "body", str(e["msg"]))
            for e in error.errors()
        ]
        message = "; ".join(f"{field}: {problem}" for field, problem in problems)
        return OpenAIError(
            400,
            message or "invalid request",
            code="invalid_request",
            param=problems[0][0] if problems else None,
        )
    if isinstance(error, DatabaseUnavailable):
        return OpenAIError(503, str(error), code="database_unavailable", headers=_AGAIN)
    if isinstance(error, StoreError):
        return OpenAIError(503, str(error), code=error.code, headers=_AGAIN)
    if isinstance(error, HTTPException):
        return OpenAIError(
            error.status_code,
            str(error.detail),
            code=getattr(error, "code", None),
            headers=dict(error.headers or {}),
        )
    raise error


def openai_response(error: OpenAIError) -> JSONResponse:
    body = openai_body(
        error.message, type=error_type(error.status_code), code=error.code, param=error.param
    )
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


class OpenAIRoute(APIRoute):
    """A route whose errors (its handler's and its dependencies') answer in OpenAI's
    shape. Anything else still reaches the app's handlers (a 500 without a traceback)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (
                HTTPException,
                RequestValidationError,
                DatabaseUnavailable,
                StoreError,
            ) as error:
                return openai_response(as_openai(error))

        return handle


# The platform's answers' headers that a rewritten body replaces.
_BODY_HEADERS = frozenset({"content-length", "content-type"})


def _by_path(platform: Callable[..., Any]) -> Callable[[Request, Exception], Awaitable[Response]]:
    """`platform`'s answer to an error, in OpenAI's shape under /v1: its status, headers,
    code and message (with the request id of a 500 in it) kept."""

    async def handle(request: Request, error: Exception) -> Response:
        answer = platform(request, error)
        if inspect.isawaitable(answer):
            answer = await answer
        assert isinstance(answer, Response)
        if not request.url.path.startswith("/v1/"):
            return answer
        given = json.loads(bytes(answer.body))["error"]
        message = str(given.get("message") or "")
        if given.get("request_id"):
            message = f"{message} (request id {given['request_id']})"
        body = openai_body(message, type=error_type(answer.status_code), code=given.get("code"))
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in _BODY_HEADERS}
        return JSONResponse(body, status_code=answer.status_code, headers=headers)

    return handle


def install_openai_errors(app: FastAPI) -> None:
    """Answer every error the app's handlers answer in OpenAI's shape under /v1 (install
    it after them): what `OpenAIRoute` does not see, since no route took the request or
    its failure was unexpected."""
    for error_class, platform in list(app.exception_handlers.items()):
        app.add_exception_handler(error_class, _by_path(platform))
