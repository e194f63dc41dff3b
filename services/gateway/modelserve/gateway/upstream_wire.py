"""HTTP/1.1 to model servers, on the event loop's own transports: the hot path's client.

One `Wire` per peer (scheme, host, port) keeps that peer's connections: kept alive
between requests (idle for at most `idle_seconds`), at most `limit` in use at once
(later requests wait their turn, first come first served). Each connection is an
`asyncio.Protocol` whose bytes go through httptools' parser (llhttp, the parser of
Node.js and of uvicorn): a request is one write; its answer is a head (awaited) and a
body, buffered as it arrives and read whole or piece by piece; reading pauses while a
reader is `HIGH_WATER` bytes behind, so a slow client holds back its model server
instead of filling the gateway's memory.

It replaced aiohttp on the proxy's path: aiohttp spent about a fifth of the gateway's
CPU on a proxied request (a task per request to write its body, cookie, redirect and
tracing machinery the proxy never uses); see docs/gateway.md#what-the-gateway-adds.

Errors are `WireError`s that say what the proxy needs: whether any byte of an answer
came (`answered`), whether the server closed without a word (`closed`: a kept-alive
connection it no longer wanted), and whether a deadline passed (`timeout`).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import cast
from urllib.parse import urlsplit

import httptools

# A reader this many bytes behind pauses the connection's reading until it catches up.
HIGH_WATER = 256 * 1024
_CRLF = b"\r\n"


class WireError(Exception):
    """An exchange failed. `answered`: some of the answer had arrived; `closed`: the
    server closed the connection cleanly before any of it; `timeout`: a deadline passed."""

    def __init__(
        self, message: str, *, answered: bool, closed: bool = False, timeout: bool = False
    ) -> None:
        super().__init__(message)
        self.answered = answered
        self.closed = closed
        self.timeout = timeout


@dataclass(frozen=True)
class Address:
    """Where a URL's request goes, and what its request line and Host header say."""

    scheme: str
    host: str
    port: int
    target: bytes  # path and query
    host_header: bytes

    @property
    def peer(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@lru_cache(maxsize=4096)
def address(url: str) -> Address:
    """A URL's address (cached: the proxy posts to a few URLs over and over)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    if port != default:
        shown = f"{shown}:{port}"
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return Address(parts.scheme, host, port, target.encode("ascii"), shown.encode("idna"))


def request_bytes(where: Address, body: bytes, headers: Mapping[str, str]) -> bytes:
    """A POST of `body` with `headers`, as it goes on the wire. A header name or value
    with a line break is refused: it would end the head and start another request."""
    lines = [
        b"POST " + where.target + b" HTTP/1.1",
        b"Host: " + where.host_header,
        b"Content-Length: %d" % len(body),
    ]
    for name, value in headers.items():
        line = f"{name}: {value}".encode("latin-1")
        if b"\r" in line or b"\n" in line or b"\0" in line:
            raise ValueError(f"a line break in the header {name!r}")
        lines.append(line)
    lines.append(b"")
    lines.append(body)
    return _CRLF.join(lines)


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one exchange at a time."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self._loop = wire.loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._answered = False
        self._headed = False
        self._complete = False
        self._error: WireError | None = None
        self._paused = False
        self._delimited = True  # the body has a length or chunks (else: until close)
        self._keep_alive = False  # the server keeps the connection after this answer

    # --- the exchange, as `Wire` drives it ----------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[None]:
        """Write a request; the future is done when its answer's head has arrived."""
        assert self.transport is not None
        self._head = self._loop.create_future()
        self.transport.write(data)
        return self._head

    async def read_some(self, seconds: float) -> bytes:
        """What has arrived of the body ("" at its end), waiting at most `seconds` for
        more."""
        while not self._buffer:
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            await _within(self._waiter, seconds, self, "stopped sending its answer")
        data = self._buffer.popleft() if len(self._buffer) == 1 else b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def answered(self) -> bool:
        """Some of the answer to the request in progress has arrived."""
        return self._answered

    @property
    def reusable(self) -> bool:
        return self._complete and self._keep_alive and not self.closed

    def idle(self) -> None:
        """The answer was read to its end: ready for the next request."""
        self._reset()
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport's subclasses, but write alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._head is None or self._complete:
            # Bytes no request asked for (on an idle connection, or after a whole answer):
            # what follows on this connection cannot be trusted to belong to the next one.
            self.close()
            return
        self._answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(WireError(f"an answer that is not HTTP: {error}", answered=True))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wire.forget(self)
        if self._headed and not self._delimited and not self._complete and exc is None:
            self.on_message_complete()  # a body that ends with the connection
            return
        if exc is not None:
            message = f"the connection failed: {exc!r}"
        else:
            message = "the server closed the connection"
        self._fail(
            WireError(message, answered=self._answered, closed=exc is None and not self._answered)
        )

    def pause_writing(self) -> None:
        pass  # a request is written once; the transport buffers it

    def resume_writing(self) -> None:
        pass

    # --- httptools' callbacks -----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self.headers = []  # an interim answer (100 Continue): the real one follows
            return
        self.status = status
        self._headed = True
        self._delimited = any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers
        ) or status in (204, 304)
        # Asked here: once the message is complete the parser has forgotten it.
        self._keep_alive = self._parser.should_keep_alive()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._buffer.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self._headed:
            return  # the end of an interim answer
        self._complete = True
        self._wake()

    # --- -------------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: WireError) -> None:
        if self._error is None:
            self._error = error
        for future in (self._head, self._waiter):
            if future is not None and not future.done():
                future.set_exception(error)


async def _within(
    future: asyncio.Future[None], seconds: float, conn: Connection, what: str
) -> None:
    """Wait for `future` at most `seconds`; past that the exchange fails (and
    its connection closes: the rest of its answer could not be told from the next)."""
    loop = asyncio.get_running_loop()

    def expire() -> None:
        if not future.done():
            future.set_exception(WireError(what, answered=conn.answered, timeout=True))
            conn.close()

    timer = loop.call_later(seconds, expire)
    try:
        await future
    finally:
        timer.cancel()


class Answer:
    """An answer whose head has arrived, on a connection lent to it until `release`
    (read to its end: the connection is kept for the next request) or `abort`."""

    def __init__(self, wire: Wire, conn: Connection, read_timeout: float) -> None:
        self._wire = wire
        self._conn: Connection | None = conn
        self._read_timeout = read_timeout
        self.status = conn.status
        self.headers = conn.headers

    async def read_some(self) -> bytes:
        assert self._conn is not None, "the answer was released"
        return await self._conn.read_some(self._read_timeout)

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.read_some():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def pieces(self) -> AsyncIterator[bytes]:
        while chunk := await self.read_some():
            yield chunk

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._wire.give_back(conn, keep=conn.reusable)

    def abort(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._wire.give_back(conn, keep=False)


class Wire:
    """The connections to one peer: at most `limit` in use, idle ones kept for reuse."""

    def __init__(
        self,
        peer: tuple[str, str, int],
        *,
        limit: int,
        idle_seconds: float,
        ssl_context: ssl.SSLContext | None,
        on_empty: Callable[[Wire], None] | None = None,
    ) -> None:
        self.peer = peer
        self._on_empty = on_empty
        self.loop = asyncio.get_running_loop()
        self._limit = limit
        self._idle_seconds = idle_seconds
        self._ssl = ssl_context
        self._idle: list[Connection] = []
        self._busy: set[Connection] = set()
        # Connections in use or promised to a request whose turn came (at most `limit`).
        self._taken = 0
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def exchange(self, data: bytes, connect_timeout: float, read_timeout: float) -> Answer:
        """Send a request (whole, as bytes) and wait for its answer's head."""
        conn = await self._take(connect_timeout)
        try:
            await _within(conn.send(data), read_timeout, conn, "did not answer in time")
        except BaseException:
            self.give_back(conn, keep=False)
            raise
        return Answer(self, conn, read_timeout)

    async def _take(self, connect_timeout: float) -> Connection:
        """A connection in use for this request: an idle one, or a new one."""
        if self._taken >= self._limit or self._waiting:
            turn = self.loop.create_future()
            self._waiting.append(turn)
            try:
                await turn  # `_next_turn` counts the connection taken for this request
            except BaseException:
                if not turn.done() or turn.cancelled():
                    if turn in self._waiting:
                        self._waiting.remove(turn)
                elif turn.exception() is None:
                    self._taken -= 1  # given its turn, then cancelled: the next one's
                    self._next_turn()
                raise
        else:
            self._taken += 1
        try:
            conn = await self._ready_connection(connect_timeout)
        except BaseException:
            self._taken -= 1
            self._next_turn()
            raise
        self._busy.add(conn)
        return conn

    async def _ready_connection(self, connect_timeout: float) -> Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self._idle_seconds:
                return conn
            conn.close()
        conn = Connection(self)
        try:
            await self._connect(conn, connect_timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _connect(self, conn: Connection, seconds: float) -> None:
        scheme, host, port = self.peer
        try:
            async with asyncio.timeout(seconds):
                await self.loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=self._ssl if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                )
        except TimeoutError as error:
            raise WireError("the connection took too long", answered=False, timeout=True) from error
        except (OSError, ssl.SSLError) as error:
            raise WireError(f"cannot connect: {error!r}", answered=False) from error

    def give_back(self, conn: Connection, *, keep: bool) -> None:
        if conn not in self._busy:
            return
        self._busy.discard(conn)
        self._taken -= 1
        if keep and not conn.closed:
            conn.idle()
            self._idle.append(conn)
            if self._sweep_timer is None:
                self._sweep_timer = self.loop.call_later(self._idle_seconds, self._sweep)
        else:
            conn.close()
        self._next_turn()
        self._check_empty()

    def forget(self, conn: Connection) -> None:
        """A connection closed: an idle one is gone from the pool."""
        if conn in self._idle:
            self._idle.remove(conn)
            self._check_empty()

    def _sweep(self) -> None:
        """Close the connections idle for `idle_seconds`: a server that went away without
        closing them (its node gone) would otherwise keep them open for good."""
        self._sweep_timer = None
        now = time.monotonic()
        for conn in [c for c in self._idle if now - c.idle_since >= self._idle_seconds]:
            conn.close()  # its connection_lost takes it out of the pool
            if conn in self._idle:
                self._idle.remove(conn)
        if self._idle:
            oldest = min(conn.idle_since for conn in self._idle)
            delay = max(0.0, oldest + self._idle_seconds - now)
            self._sweep_timer = self.loop.call_later(delay, self._sweep)
        self._check_empty()

    def _check_empty(self) -> None:
        """A pool that holds nothing any more is dropped by its client (`on_empty`)."""
        empty = not (self._taken or self._idle or self._waiting)
        if empty and self._on_empty is not None:
            self._on_empty(self)

    def _next_turn(self) -> None:
        """Give free connections to the requests waiting for one, in order."""
        while self._waiting and self._taken < self._limit:
            turn = self._waiting.popleft()
            if not turn.done():
                self._taken += 1
                turn.set_result(None)

    def close(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        self._busy.clear()
        self._taken = 0
        for turn in self._waiting:
            if not turn.done():
                turn.set_exception(WireError("the client is closed", answered=False))
        self._waiting.clear()
