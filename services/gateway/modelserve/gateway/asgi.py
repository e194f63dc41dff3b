"""What the proxy's and the scaler's responses share: they answer through ASGI themselves,
after the request's body was read, minding the client's disconnect."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Send

# A client that went away before its answer, or an answer never sent (nginx's
# convention; a status no client ever receives).
CLIENT_CLOSED = 499


class ExchangeResponse(Response):
    """A response that writes its answer itself, in `__call__`."""

    def __init__(self) -> None:
        # Response.__init__ would render a body; this one has none of its own.
        self.status_code = 200
        self.background = None

    def abandon(self) -> None:
        """The response will never be sent: give back what was reserved for it."""
        raise NotImplementedError


async def client_gone(receive: Receive) -> None:
    """Returns when the client disconnects; a response cancels its work then. The body
    was read: what `receive` says next is that the client went away."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    """A whole JSON answer."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
