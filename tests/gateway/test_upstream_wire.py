"""The proxy's HTTP/1.1 client (`upstream`, `upstream_wire`) against scripted servers on
loopback: what it sends, how it reads each way an answer can be framed, when it keeps
a connection, how many it opens, and what each failure becomes. The proxy's own tests
(tests/gateway/test_proxy.py, test_dispatch.py, ...) run it against llama.cpp and the
OpenAI stub."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modelserve.gateway.upstream import (
    BrokenStream,
    NoAnswer,
    UpstreamClient,
    UpstreamError,
    UpstreamTimeout,
)
from modelserve.gateway.upstream_wire import HIGH_WATER
from modelserve.testbed.pki import CertificateAuthority

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


@dataclass
class Server:
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader, server: Server) -> bytes | None:
    """One request's head and body (by its Content-Length); None at the end."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    request = head + await reader.readexactly(length)
    server.requests.append(request)
    return request


@contextlib.asynccontextmanager
async def scripted(script: Script, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        try:
            await script(reader, writer, server)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: the script has nothing more to say
        finally:
            writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    server.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield server


def client(read_timeout: float = 5.0, connections: int = 8) -> UpstreamClient:
    return UpstreamClient(connections=connections, connect_timeout=2.0, read_timeout=read_timeout)


def url(server: Server, path: str = "/v1/chat/completions") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def answer_each(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
) -> None:
    while await read_request(reader, s) is not None:
        writer.write(OK)


def test_the_request_on_the_wire_and_a_kept_connection() -> None:
    async def run() -> tuple[Server, list[tuple[int, bytes]]]:
        async with scripted(answer_each) as server:
            http = client()
            try:
                answers = [
                    await http.post(url(server), b'{"a": 1}', {"Accept": "application/json"})
                    for _ in range(3)
                ]
            finally:
                await http.close()
        return server, answers

    server, answers = asyncio.run(run())
    assert answers == [(200, b"{}")] * 3
    assert server.connections == 1  # kept alive between the three
    head, body = server.requests[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"Content-Length: 8" in lines
    assert b"Accept: application/json" in lines
    # Nothing the proxy did not ask for: no cookie, no compression, no agent.
    assert not any(line.lower().startswith((b"cookie", b"accept-encoding")) for line in lines)
    assert body == b'{"a": 1}'


def test_a_connection_the_server_closes_after_its_answer_is_not_kept() -> None:
    async def close_after(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await read_request(reader, s)
        writer.write(OK.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1))
        await writer.drain()
        await asyncio.sleep(0.2)  # still open when the next request is sent

    async def run() -> Server:
        async with scripted(close_after) as server:
            http = client()
            try:
                for _ in range(2):
                    assert await http.post(url(server), b"{}", {}) == (200, b"{}")
            finally:
                await http.close()
        return server

    assert asyncio.run(run()).connections == 2


def test_a_body_without_a_length_ends_with_the_connection() -> None:
    async def until_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")

    async def run() -> tuple[int, bytes]:
        async with scripted(until_close) as server:
            http = client()
            try:
                return await http.post(url(server), b"{}", {})
            finally:
                await http.close()

    assert asyncio.run(run()) == (200, b"all of it")


def test_a_chunked_stream_arrives_piece_by_piece() -> None:
    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\nx-request-id: theirs\r\n\r\n"
        )
        for index in range(3):
            event = b"data: %d\n\n" % index
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await read_request(reader, s)  # the connection stays for another request

    async def run() -> tuple[str, list[bytes], list[bytes]]:
        async with scripted(stream) as server:
            http = client()
            try:
                answer = await http.send(url(server), b"{}", {})
                pieces = [piece async for piece in answer.chunks()]
                answer.release()
                names = [name.lower() for name, _ in answer.headers]
            finally:
                await http.close()
        return answer.content_type, pieces, names

    content_type, pieces, names = asyncio.run(run())
    assert content_type == "text/event-stream"
    assert pieces == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]  # as they came
    # Framing and the server's request id are the gateway's own to write.
    assert b"transfer-encoding" not in names and b"x-request-id" not in names


def test_a_large_answer_read_slowly_arrives_whole() -> None:
    size = 8 * HIGH_WATER  # reading pauses and resumes several times

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        writer.write(bytes(range(256)) * (size // 256))
        await writer.drain()

    async def run() -> bytes:
        async with scripted(large) as server:
            http = client()
            try:
                answer = await http.send(url(server), b"{}", {})
                received = []
                async for piece in answer.chunks():
                    received.append(piece)
                    await asyncio.sleep(0.01)  # a slow client
                answer.release()
            finally:
                await http.close()
        return b"".join(received)

    assert asyncio.run(run()) == bytes(range(256)) * (size // 256)


def test_requests_past_the_connection_limit_wait_their_turn() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        while await read_request(reader, s) is not None:
            await asyncio.sleep(0.1)
            writer.write(OK)

    async def run() -> tuple[Server, list[tuple[int, bytes]]]:
        async with scripted(slow) as server:
            http = client(connections=2)
            try:
                answers = await asyncio.gather(
                    *(http.post(url(server), b"{}", {}) for _ in range(6))
                )
            finally:
                await http.close()
        return server, list(answers)

    server, answers = asyncio.run(run())
    assert answers == [(200, b"{}")] * 6
    assert server.connections == 2


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async def run() -> tuple[Server, BaseException]:
        async with scripted(answer_each) as server:
            http = client()
            try:
                with pytest.raises(UpstreamError) as raised:
                    await http.post(url(server), b"{}", {"Accept": "x\r\nX-Injected: 1"})
            finally:
                await http.close()
        return server, raised.value

    server, error = asyncio.run(run())
    assert not isinstance(error, NoAnswer)  # not a failure of the server to retry
    assert server.requests == []


@pytest.mark.parametrize(
    ("say", "expected", "closed"),
    [
        (b"", NoAnswer, True),  # closed without a word: the same endpoint may retry
        (b"not http at all\r\n\r\n", UpstreamError, False),
    ],
)
def test_what_a_failure_before_the_head_becomes(
    say: bytes, expected: type[UpstreamError], closed: bool
) -> None:
    async def fail(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(say)

    async def run() -> BaseException:
        async with scripted(fail) as server:
            http = client()
            try:
                with pytest.raises(UpstreamError) as raised:
                    await http.post(url(server), b"{}", {})
            finally:
                await http.close()
        return raised.value

    error = asyncio.run(run())
    assert type(error) is expected
    assert getattr(error, "closed", False) is closed


def test_a_refused_connection_is_no_answer() -> None:
    async def run() -> BaseException:
        async with scripted(answer_each) as server:
            port = server.port
        http = client()  # nothing listens there any more
        try:
            with pytest.raises(NoAnswer) as raised:
                await http.post(f"http://127.0.0.1:{port}/v1/completions", b"{}", {})
        finally:
            await http.close()
        return raised.value

    error = asyncio.run(run())
    assert isinstance(error, NoAnswer) and not error.closed


def test_silence_before_the_head_or_within_the_body_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        await asyncio.sleep(2)

    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        await asyncio.sleep(2)

    async def run() -> tuple[BaseException, BaseException]:
        http = client(read_timeout=0.3)
        try:
            async with scripted(silent) as server:
                with pytest.raises(UpstreamTimeout) as head:
                    await http.post(url(server), b"{}", {})
            async with scripted(stalls) as server:
                answer = await http.send(url(server), b"{}", {})
                with pytest.raises(UpstreamTimeout) as body:
                    await answer.read()
                answer.abort()
        finally:
            await http.close()
        return head.value, body.value

    head, body = asyncio.run(run())
    assert "did not answer in time" in str(head)
    assert "stopped sending" in str(body)


def test_an_answer_broken_off_is_a_broken_stream() -> None:
    async def breaks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()

    async def run() -> None:
        async with scripted(breaks) as server:
            http = client()
            try:
                answer = await http.send(url(server), b"{}", {})
                with pytest.raises(BrokenStream):
                    await answer.read()
                answer.abort()
            finally:
                await http.close()

    asyncio.run(run())


def test_bytes_no_request_asked_for_close_the_connection() -> None:
    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        while await read_request(reader, s) is not None:
            writer.write(OK)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(OK)  # an answer to no request

    async def run() -> Server:
        async with scripted(chatty) as server:
            http = client()
            try:
                for _ in range(2):
                    assert await http.post(url(server), b"{}", {}) == (200, b"{}")
                    await asyncio.sleep(0.2)
            finally:
                await http.close()
        return server

    # The second request does not read the first one's stray answer as its own.
    assert asyncio.run(run()).connections == 2


def server_tls(ca: CertificateAuthority) -> ssl.SSLContext:
    pair = ca.issue("server", "model-server", hosts=("127.0.0.1",), server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert, pair.key)
    return context


def test_https_is_verified_against_the_trusted_authorities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusted = CertificateAuthority(tmp_path / "trusted", "trusted-ca")
    stranger = CertificateAuthority(tmp_path / "stranger", "stranger-ca")
    # The system's trust store, as OpenSSL reads it, holds the trusted authority alone.
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted.pair.cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    async def run() -> tuple[tuple[int, bytes], BaseException, Server]:
        http = client()
        try:
            async with scripted(answer_each, server_tls(trusted)) as server:
                answered = await http.post(f"https://127.0.0.1:{server.port}/v1/x", b"{}", {})
            async with scripted(answer_each, server_tls(stranger)) as unknown:
                with pytest.raises(UpstreamError) as raised:
                    await http.post(f"https://127.0.0.1:{unknown.port}/v1/x", b"{}", {})
        finally:
            await http.close()
        return answered, raised.value, unknown

    answered, refused, unknown = asyncio.run(run())
    assert answered == (200, b"{}")
    assert "CERTIFICATE_VERIFY_FAILED" in getattr(refused, "detail", "")
    assert unknown.requests == []  # nothing was sent to a server not proven to be the one


def test_an_idle_connection_is_closed_after_the_idle_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("modelserve.gateway.upstream.IDLE_SECONDS", 0.3)
    closed: list[float] = []

    async def patient(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        while await read_request(reader, s) is not None:
            writer.write(OK)
        closed.append(asyncio.get_running_loop().time())

    async def run() -> tuple[Server, float]:
        async with scripted(patient) as server:
            http = client()
            try:
                assert await http.post(url(server), b"{}", {}) == (200, b"{}")
                answered = asyncio.get_running_loop().time()
                await asyncio.sleep(1.0)  # no request meanwhile
                assert await http.post(url(server), b"{}", {}) == (200, b"{}")
            finally:
                await http.close()
        return server, answered

    server, answered = asyncio.run(run())
    # The client closed the first connection by itself, about when it had been idle 0.3 s;
    # the second request had a new one.
    assert closed and 0.2 <= closed[0] - answered < 0.9
    assert server.connections == 2
