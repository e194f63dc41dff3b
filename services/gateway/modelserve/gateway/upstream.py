"""The HTTP client of the hot path: to model servers (and the contract's /decide, its
leases and usage).

HTTP/1.1 on the event loop's transports with httptools' parser (`upstream_wire`), kept
alive per server. aiohttp was the client before it, chosen on measurement over httpx
(bench/gateway_http_clients.py: 60-130 µs of CPU per proxied JSON request against
540-2,100 µs); on the proxy's path aiohttp still took about a fifth of the gateway's CPU,
most of it machinery the proxy never uses (a task per request to write its body, cookies,
redirects). Only this module and `upstream_wire` know the wire: the proxy sees
`UpstreamClient`, `UpstreamResponse` and `UpstreamError`.

What the proxy relies on: no cookie is kept (one client carries every user's requests:
a cookie a model server set for one must never go with another's), no redirect is
followed (it could take the request, and an external server's key, anywhere), bodies
pass through as the server sent them (no Accept-Encoding is asked, nothing decoded), and
no proxy from the environment is used.

Every call made for a request is a span of its trace (`trace_context`): a child of the
request's span, named in the call's `traceparent`, from the send until the answer is
released or aborted. Each call has a span of its own: a scaled request's candidates, the
parts of a list of prompts, a retry on another endpoint.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping

from modelserve.common.trace_context import Span, call_span
from modelserve.gateway.upstream_wire import Answer, Wire, WireError, address, request_bytes

# Not passed on to the client: hop-by-hop headers, and those the gateway's own server
# writes (a second Date or Server, or a Content-Length for a body it re-frames).
_NOT_PASSED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"date",
        b"server",
        # The gateway answers the request's id itself (`request_ids`), once.
        b"x-request-id",
    }
)


# Seconds a pooled connection to a model server may stay idle (below their 5 s).
IDLE_SECONDS = 4.0


class UpstreamError(Exception):
    """A model server could not be reached, or broke off its answer.

    The message is for the client and names no address; `detail` is for the log.
    """

    status = 502
    kind = "unreachable"

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


class NoAnswer(UpstreamError):
    """The connection failed before any byte of an answer: refused, reset or closed
    before the response head (not a timeout). Another endpoint of the server may take
    the request.

    `closed`: the server closed the connection without a word, as it closes a kept-alive
    connection it no longer wants (llama-server does so even within our idle limit). The
    request was not taken; the same endpoint may take it on a new connection."""

    def __init__(self, message: str, detail: str = "", *, closed: bool = False) -> None:
        super().__init__(message, detail)
        self.closed = closed


class UpstreamTimeout(UpstreamError):
    """A model server took longer than the connect or read timeout."""

    status = 504
    kind = "timeout"


class BrokenStream(UpstreamError):
    kind = "stream"


def _media_type(headers: list[tuple[bytes, bytes]]) -> str:
    """The answer's media type, lowercased, without its parameters."""
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower().decode("latin-1")
    return "application/octet-stream"


class UpstreamResponse:
    """An answer whose head has arrived; its body is read whole or chunk by chunk."""

    def __init__(self, answer: Answer, span: Span | None = None) -> None:
        self._answer = answer
        self._span = span
        self.status = answer.status
        self.content_type = _media_type(answer.headers)
        self.headers = [
            (name, value) for name, value in answer.headers if name.lower() not in _NOT_PASSED
        ]

    async def read(self) -> bytes:
        try:
            return await self._answer.read()
        except WireError as error:
            raise _broken(error) from error

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in the pieces the network delivers."""
        try:
            async for chunk in self._answer.pieces():
                yield chunk
        except WireError as error:
            raise _broken(error) from error

    def release(self) -> None:
        """Done with a fully read answer: its connection goes back to the pool."""
        self._answer.release()
        self._end_span()

    def abort(self) -> None:
        """Give up on an answer mid-way: its connection is closed, which tells the model
        server that nobody waits for the rest (vLLM and llama.cpp then stop generating)."""
        self._answer.abort()
        self._end_span()

    def _end_span(self) -> None:
        if self._span is not None:
            self._span.end(self.status)
            self._span = None


def _broken(error: WireError) -> UpstreamError:
    """The error of an answer that failed after its head."""
    if error.timeout:
        return UpstreamTimeout("the model server stopped sending its answer", str(error))
    return BrokenStream("the model server broke off its answer", str(error))


def _failure(url: str, error: WireError | ValueError) -> UpstreamError:
    """The UpstreamError of a POST that failed before the head of its answer."""
    detail = f"{url}: {error}"
    if isinstance(error, ValueError):
        return UpstreamError("the model server is unreachable", detail)
    if error.timeout:
        return UpstreamTimeout("the model server did not answer in time", detail)
    if not error.answered:
        return NoAnswer("the model server is unreachable", detail, closed=error.closed)
    return UpstreamError("the model server is unreachable", detail)


class UpstreamClient:
    """Keep-alive connections to each server (host and port), opened as requests need
    them and closed at shutdown.

    `connections` limits the connections in use to each server, so that one busy server
    cannot take every connection from the others: a request past it waits its turn.
    """

    def __init__(self, *, connections: int, connect_timeout: float, read_timeout: float) -> None:
        self._connections = connections
        # The read timeout applies between two reads (and to the head), so a silent
        # server is caught and a talking one is not: a long generation streams for minutes.
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ssl = ssl.create_default_context()
        self._wires: dict[tuple[str, str, int], Wire] = {}

    def _wire(self, peer: tuple[str, str, int]) -> Wire:
        wire = self._wires.get(peer)
        if wire is None:
            # Model servers close idle connections after 5 s (llama-server's httplib,
            # vLLM's uvicorn). A pooled connection reused just as the server closes it
            # fails before any answer, and a server with one replica has no other
            # endpoint to retry on: idle ones go first.
            wire = Wire(
                peer,
                limit=self._connections,
                idle_seconds=IDLE_SECONDS,
                ssl_context=self._ssl,
                on_empty=self._forget,
            )
            self._wires[peer] = wire
        return wire

    def _forget(self, wire: Wire) -> None:
        """A server's pool holds nothing any more (its pod is gone, say): dropped."""
        if self._wires.get(wire.peer) is wire:
            del self._wires[wire.peer]

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        """POST `body` to `url` and wait for the head of the answer."""
        span = call_span("POST", url)
        if span is not None:
            headers = {**headers, **span.headers()}
        try:
            where = address(url)
            data = request_bytes(where, body, headers)
            answer = await self._wire(where.peer).exchange(
                data, self._connect_timeout, self._read_timeout
            )
        except (WireError, ValueError) as error:
            if span is not None:
                span.end(None)  # no answer
            raise _failure(url, error) from error
        except BaseException:
            if span is not None:
                span.end(None)
            raise
        return UpstreamResponse(answer, span)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """A whole exchange: the status and body of the answer."""
        response = await self.send(url, body, headers)
        try:
            status, data = response.status, await response.read()
        except BaseException:
            response.abort()
            raise
        response.release()
        return status, data

    async def close(self) -> None:
        for wire in list(self._wires.values()):
            wire.close()
        self._wires.clear()
