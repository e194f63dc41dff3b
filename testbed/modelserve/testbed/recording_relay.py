"""A model server's front door that remembers what it was sent: every request to it goes
on, unchanged, to a real model server (the test bed's llama.cpp server), and its answer
comes back, while the relay keeps the request's method, path and headers. Tests see
through it what the gateway sends a model server (the trace context headers, say)."""

from __future__ import annotations

import dataclasses

import aiohttp
from aiohttp import web

from modelserve.testbed.threaded_http import ThreadedApp

# Not passed back: the relay's own server frames the answer.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "date", "server"})


@dataclasses.dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    """Names in lowercase."""


class RecordingRelay(ThreadedApp):
    """Relays to `target` (a base URL ending in /v1, as `url` does)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target.removesuffix("/v1")
        self.received: list[Received] = []

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._relay)
        return app

    def posted(self, since: int = 0) -> list[Received]:
        """The POSTs received since the `since`-th request (probes are GETs)."""
        return [found for found in self.received[since:] if found.method == "POST"]

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.received.append(Received(request.method, request.path, headers))
        sent = {
            name: value
            for name, value in headers.items()
            if name in ("content-type", "accept", "authorization", "x-request-id")
        }
        body = await request.read()
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.target + request.path_qs, data=body, headers=sent
            ) as answer,
        ):
            response = web.StreamResponse(
                status=answer.status,
                headers={
                    name: value
                    for name, value in answer.headers.items()
                    if name.lower() not in _FRAMING
                },
            )
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
