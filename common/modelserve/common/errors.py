"""Errors as every ModelServe service answers them: JSON with a stable code and a message.

    {"error": {"code": "token_expired", "message": "the token expired at …"}}

Handlers raise `ApiError`; FastAPI's own errors (404 for an unknown route, 422 for a
body that does not validate) are turned into the same shape. Anything else a handler
raises is a 500 `internal_error` that names the request's id (the traceback goes to the
log once, by uvicorn, with that id; never to the client). Nothing leaks a traceback.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from modelserve.common.request_ids import HEADER, current_request_id

# Codes for the statuses FastAPI raises by itself.
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    503: "unavailable",
}


class ApiError(HTTPException):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    code = getattr(error, "code", None) or _STATUS_CODES.get(error.status_code, "error")
    return JSONResponse(
        error_body(code, str(error.detail)), status_code=error.status_code, headers=error.headers
    )


async def _invalid(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        {"field": ".".join(str(part) for part in e["loc"]), "problem": e["msg"]}
        for e in error.errors()
    ]
    message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems) or "invalid request"
    return JSONResponse(error_body("invalid_request", message, details=problems), status_code=422)


def answer_unavailable(app: FastAPI, error_type: type[Exception], code: str) -> None:
    """Answer `error_type` (a store that cannot be reached, say) with 503 `code` and a
    Retry-After: the client may try again in a moment."""

    async def unavailable(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse(
            error_body(code, str(error)), status_code=503, headers={"Retry-After": "1"}
        )

    app.add_exception_handler(error_type, unavailable)


async def internal_error(_: Request, __: Exception) -> JSONResponse:
    """The answer to an exception no handler took. Starlette calls this from its outermost
    middleware, outside the request-id middleware, hence the header set here; it raises
    the exception again afterwards, and uvicorn logs its traceback (in the request's
    context, so with its id)."""
    request_id = current_request_id()
    body = error_body(
        "internal_error",
        "the service failed on this request; quote the request id when reporting it",
        request_id=request_id,
    )
    headers = {HEADER: request_id} if request_id is not None else None
    return JSONResponse(body, status_code=500, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, internal_error)
