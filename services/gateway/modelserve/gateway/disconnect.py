"""Watching the client of an ASGI response whose body was read: what `receive` says next
is that the client went away."""

from __future__ import annotations

from starlette.types import Receive


async def client_gone(receive: Receive) -> None:
    """Returns when the client disconnects; a response cancels its work then."""
    while (await receive())["type"] != "http.disconnect":
        pass
