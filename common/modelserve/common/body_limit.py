"""A cap on request bodies, for services that read them whole (FastAPI parses a JSON body
in memory before any check of its fields): a body over `limit` bytes is 413
`body_too_large`, as soon as its Content-Length says so, or as soon as that many bytes
arrived when it names none (the rest is read and thrown away, up to DRAIN_BYTES, so that
the client reads the answer). Paths under `streamed` (routes that stream their bodies to
a store, with limits of their own) pass as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.common.errors import error_body

# A refused body is read on and thrown away up to this much, so that the client, still
# sending, reads the 413 rather than a reset connection; past it the connection closes.
DRAIN_BYTES = 64 << 20


class _TooLarge(Exception):
    pass


async def _drain(receive: Receive) -> None:
    drained = 0
    while drained <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class BodyLimit:
    def __init__(self, app: ASGIApp, *, limit: int, streamed: Sequence[str] = ()) -> None:
        self.app = app
        self.limit = limit
        self.streamed = tuple(streamed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(self.streamed):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _drain(receive)
            await self._refuse(send)
            return
        received = 0
        started = ended = False

        async def counted() -> Message:
            nonlocal received, ended
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                ended = not message.get("more_body", False)
                if received > self.limit:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if started:  # the app answered before reading it all: the answer stands
                raise
            if not ended:
                await _drain(receive)
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        # The platform's error shape, and OpenAI's (its routes under /v1) at once.
        error = error_body(
            "body_too_large",
            f"the request body is over this service's {self.limit} bytes",
            type="invalid_request_error",
            param=None,
        )
        body = json.dumps(error).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})
