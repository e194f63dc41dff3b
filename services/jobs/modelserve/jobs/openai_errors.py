"""Errors of the jobs service's /v1 routes (OpenAI Files and Batches) in OpenAI's shape,
as the gateway answers its own /v1 routes:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "purpose",
               "code": "invalid_purpose"}}

OpenAI's SDKs read `error.message` and map the status to an exception class, and the
gateway passes these answers through unchanged. The routers of `files` and `batches` use
`OpenAIRoute`, which turns every error of their handlers and dependencies (an `ApiError`
from authentication, FastAPI's validation errors, a database or store that cannot be
reached: 503) into this shape; the service's other
routes keep the platform's."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from modelserve.common.database import DatabaseUnavailable
from modelserve.common.objects import StoreError

# OpenAI's error types by status.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
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
