"""The HTTP client of the hot path: to model servers (and the contract's /decide).

aiohttp, chosen on measurement (bench/gateway_http_clients.py, loopback, uvloop): it
spent 60-130 µs of CPU per proxied JSON request where httpx spent 540-2,100 µs, and
httpx's throughput fell from 1,800 to 470 requests/s between 1 and 256 requests in
flight while aiohttp's stayed at 13,000-17,000. Only this module knows the library: the
proxy sees `UpstreamClient`, `UpstreamResponse` and `UpstreamError`.

Every call made for a request is a span of its trace (`trace_context`): a child of the
request's span, named in the call's `traceparent`, from the send until the answer is
released or aborted. Each call has a span of its own: a scaled request's candidates, the
parts of a list of prompts, a retry on another endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp

from modelserve.common.trace_context import Span, call_span

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


# Raised by `post` before the head of an answer arrived, with no answer byte read: a
# refused or failed connect (ClientConnectorError is a ClientOSError), a reset, or a
# connection the server closed. Timeouts are caught before these.
_NO_ANSWER = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)


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


class UpstreamResponse:
    """An answer whose head has arrived; its body is read whole or chunk by chunk."""

    def __init__(self, response: aiohttp.ClientResponse, span: Span | None = None) -> None:
        self._response = response
        self._span = span
        self.status = response.status
        self.content_type = response.content_type
        self.headers = [
            (name, value) for name, value in response.raw_headers if name.lower() not in _NOT_PASSED
        ]

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except TimeoutError as error:
            raise UpstreamTimeout("the model server stopped sending its answer") from error
        except aiohttp.ClientError as error:
            raise BrokenStream("the model server broke off its answer", repr(error)) from error

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in the pieces the network delivers."""
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except TimeoutError as error:
            raise UpstreamTimeout("the model server stopped sending its answer") from error
        except aiohttp.ClientError as error:
            raise BrokenStream("the model server broke off its answer", repr(error)) from error

    def release(self) -> None:
        """Done with a fully read answer: its connection goes back to the pool."""
        self._response.release()
        self._end_span()

    def abort(self) -> None:
        """Give up on an answer mid-way: its connection is closed, which tells the model
        server that nobody waits for the rest (vLLM and llama.cpp then stop generating)."""
        self._response.close()
        self._end_span()

    def _end_span(self) -> None:
        if self._span is not None:
            self._span.end(self.status)
            self._span = None


def _failure(url: str, error: BaseException) -> UpstreamError | None:
    """The UpstreamError a failed POST raises for `error` of aiohttp; None for anything
    else (a cancellation, a bug), which goes on as it is."""
    detail = f"{url}: {error!r}"
    if isinstance(error, TimeoutError):
        return UpstreamTimeout("the model server did not answer in time", detail)
    if isinstance(error, _NO_ANSWER):
        closed = isinstance(error, aiohttp.ServerDisconnectedError)
        return NoAnswer("the model server is unreachable", detail, closed=closed)
    if isinstance(error, aiohttp.ClientError):
        return UpstreamError("the model server is unreachable", detail)
    return None


class UpstreamClient:
    """One pool of keep-alive connections, made at start-up and closed at shutdown.

    `connections` limits the connections to each server (host and port), so that one
    busy server cannot take every connection from the others.
    """

    def __init__(self, *, connections: int, connect_timeout: float, read_timeout: float) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=0,
                limit_per_host=connections,
                # Model servers close idle connections after 5 s (llama-server's httplib,
                # vLLM's uvicorn). A pooled connection reused just as the server closes it
                # fails before any answer, and a server with one replica has no other
                # endpoint to retry on: let idle ones go first.
                keepalive_timeout=IDLE_SECONDS,
            ),
            # No total: a long generation streams for minutes. The read timeout applies
            # between two reads, so a silent server is caught and a talking one is not.
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=connect_timeout, sock_read=read_timeout
            ),
            # Bodies pass through as the server sent them (we ask for identity anyway).
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            # No cookie jar: one session carries every user's requests, so a cookie a
            # model server set in its answer to one user would go with the next user's
            # requests to that server (a session, an identity, across tenants).
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        """POST `body` to `url` and wait for the head of the answer."""
        span = call_span("POST", url)
        if span is not None:
            headers = {**headers, **span.headers()}
        try:
            # Never followed: a redirect would take the request, and an external server's
            # key with it, wherever the server says (the answer is the caller's to judge).
            response = await self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            )
        except BaseException as error:
            if span is not None:
                span.end(None)  # no answer
            failure = _failure(url, error)
            if failure is None:
                raise
            raise failure from error
        return UpstreamResponse(response, span)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """A whole exchange: the status and body of the answer."""
        response = await self.send(url, body, headers)
        try:
            return response.status, await response.read()
        finally:
            response.release()

    async def close(self) -> None:
        await self._session.close()
