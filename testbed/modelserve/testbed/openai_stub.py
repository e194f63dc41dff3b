"""A zero-latency OpenAI-compatible upstream, for measuring what a proxy adds.

    python -m modelserve.testbed.openai_stub --port 9100 [--chunks 64]

It answers /v1/chat/completions, /v1/completions (a canned answer, or `--chunks` SSE
chunks of one token each when the request says `"stream": true`), /v1/embeddings and
/v1/models (and the gateway's /auth/delegate with a token it never checks, for the jobs
engine's tests), as fast as it can: a bare asyncio protocol over httptools' parser on uvloop,
HTTP/1.1 keep-alive, no framework. It reads only the `stream` flag of a request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import cast

import httptools
import uvloop

from modelserve.testbed.processes import free_port

MODEL = "stub"


def _json_response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def _canned(kind: str) -> bytes:
    usage = {"prompt_tokens": 8, "completion_tokens": 8, "total_tokens": 16}
    created = int(time.time())
    if kind == "completions":
        return json.dumps(
            {
                "id": "cmpl-stub",
                "object": "text_completion",
                "created": created,
                "model": MODEL,
                "choices": [{"index": 0, "text": " hello", "finish_reason": "stop"}],
                "usage": usage,
            }
        ).encode()
    if kind == "embeddings":
        return json.dumps(
            {
                "object": "list",
                "model": MODEL,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.0] * 8}],
                "usage": {"prompt_tokens": 8, "total_tokens": 8},
            }
        ).encode()
    if kind == "delegate":
        # The gateway's POST /auth/delegate, for the jobs engine's tests: a token the
        # stub never checks.
        return json.dumps(
            {"access_token": "stub", "token_type": "bearer", "expires_in": 900}
        ).encode()
    if kind == "models":
        return json.dumps(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "stub"}]}
        ).encode()
    return json.dumps(
        {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": created,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hello"},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    ).encode()


def _stream(kind: str, chunks: int) -> bytes:
    """The whole SSE answer in chunked transfer encoding, one HTTP chunk per event."""
    events = []
    for index in range(chunks):
        last = index == chunks - 1
        if kind == "completions":
            choice: dict[str, object] = {"index": 0, "text": " tok", "finish_reason": None}
        else:
            choice = {"index": 0, "delta": {"content": " tok"}, "finish_reason": None}
        if last:
            choice["finish_reason"] = "stop"
        event = {"id": "stub", "object": "chunk", "model": MODEL, "choices": [choice]}
        events.append(b"data: " + json.dumps(event).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events) + b"0\r\n\r\n"
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + body
    )


_ROUTES = {
    b"/v1/chat/completions": "chat",
    b"/v1/completions": "completions",
    b"/v1/embeddings": "embeddings",
    b"/v1/models": "models",
    b"/auth/delegate": "delegate",
}
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


def answers(chunks: int) -> dict[tuple[str, bool], bytes]:
    """Every answer, made once: (route, streamed) -> the bytes of the whole response."""
    made = {(kind, False): _json_response(_canned(kind)) for kind in set(_ROUTES.values())}
    for kind in ("chat", "completions"):
        made[(kind, True)] = _stream(kind, chunks)
    return made


class _Connection(asyncio.Protocol):
    def __init__(self, answers: dict[tuple[str, bool], bytes]) -> None:
        self._answers = answers
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but write alike.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    # httptools' callbacks
    def on_url(self, url: bytes) -> None:
        self._url = url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        kind = _ROUTES.get(self._url.split(b"?", 1)[0].rstrip(b"/"))
        stream = b'"stream":true' in b"".join(self._body).replace(b" ", b"")
        self._url, self._body = b"", []
        answer = self._answers.get((kind, stream)) if kind else None
        if answer is None and kind:
            answer = self._answers.get((kind, False))
        if self._transport is not None:
            self._transport.write(answer or _NOT_FOUND)


async def serve(host: str, port: int, chunks: int) -> None:
    made = answers(chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(made), host, port)
    async with server:
        await server.serve_forever()


@contextlib.asynccontextmanager
async def serving(chunks: int = 4) -> AsyncIterator[int]:
    """The stub on a free loopback port of the running event loop (for tests): its port,
    listening when the block starts, closed when it ends."""
    port = free_port()
    made = answers(chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(made), "127.0.0.1", port)
    async with server:
        yield port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=64, help="SSE chunks in a streamed answer")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.chunks))


if __name__ == "__main__":
    main()
