"""A request id for every HTTP request: the caller's `X-Request-ID` when it is safe to
repeat, else a new one. It goes into a context variable, which the log formatter reads
and the clients of other services send on, and back to the caller as a header.

The middleware is plain ASGI, not Starlette's BaseHTTPMiddleware: it sits on the
gateway's proxy path, where it must cost microseconds and must not buffer a stream.
Each request runs in a task of its own, whose context is a copy: the id set here is seen
by everything the request does (uvicorn's access and error logs included) and by no
other request, so it is never reset.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from contextvars import ContextVar

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_HEADER = b"x-request-id"
# A length and characters that are safe in a header, a log line and a URL: a caller's id
# that breaks these rules is replaced, never echoed.
MAX_LENGTH = 128
_SAFE = re.compile(rb"[A-Za-z0-9._:@=+/-]{1,%d}" % MAX_LENGTH)
# 32 hex digits: a UUID as `uuid.UUID` reads it, and as `new_request_id` writes it.
_HEX_UUID = re.compile(r"[0-9a-fA-F]{32}")

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


def accepted(value: bytes) -> str | None:
    """The caller's id if it is safe to carry on, else None."""
    return value.decode("ascii") if _SAFE.fullmatch(value) else None


def new_request_id() -> str:
    """A random UUID (version 4) as 32 hex digits, what `uuid.uuid4().hex` gives, made
    without a `UUID` object (a third of the cost, on every request)."""
    data = bytearray(os.urandom(16))
    data[6] = (data[6] & 0x0F) | 0x40  # version 4
    data[8] = (data[8] & 0x3F) | 0x80  # the variant of RFC 4122
    return data.hex()


def current_request_id() -> str | None:
    return REQUEST_ID.get()


def model_server_request_id(request_id: str) -> str:
    """The id as a model server gets it: a UUID. llama-cpp-python's server answers 400 to
    an `X-Request-ID` that is not one (starlette-context checks it), so an id that is not
    a UUID already (a caller's own, a job item's) goes as its UUID 5 in the OID namespace:
    `python3 -c 'import sys, uuid; print(uuid.uuid5(uuid.NAMESPACE_OID, sys.argv[1]))' ID`
    finds it in the model server's log."""
    if _HEX_UUID.fullmatch(request_id):
        return request_id  # a UUID already (every id the gateway made), read without parsing
    try:
        uuid.UUID(request_id)
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_OID, request_id))
    return request_id


def with_request_id(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` and, inside a request, its id: for a call to another service."""
    request_id = REQUEST_ID.get()
    return {**headers, HEADER: request_id} if request_id is not None else dict(headers)


async def carry_request_id(request: httpx.Request) -> None:
    """An httpx request hook: the current request's id on every call of that client
    (`event_hooks={"request": [carry_request_id]}`)."""
    request_id = REQUEST_ID.get()
    if request_id is not None and HEADER not in request.headers:
        request.headers[HEADER] = request_id


class RequestIds:
    """ASGI middleware: sets the request's id and answers it in `X-Request-ID`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                request_id = accepted(value)
                break
        if request_id is None:
            request_id = new_request_id()
        REQUEST_ID.set(request_id)
        header = (_HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Once: an answer passed on from another service may carry that one's.
                kept = [item for item in message.get("headers", ()) if item[0] != _HEADER]
                message["headers"] = [*kept, header]
            await send(message)

        await self.app(scope, receive, send_with_id)
