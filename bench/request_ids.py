"""What the request-id middleware costs per request: an ASGI request (the headers of a
chat completion, and a streamed answer of `--chunks` body messages) sent through
`RequestIds` around an app that answers at once, against the same app without it.
Prints microseconds per request for both and the difference, with and without an
`X-Request-ID` from the caller.

    .venv/bin/python bench/request_ids.py [--requests 200000] [--chunks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.common.request_ids import RequestIds


def answering(chunks: int) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]})
        for _ in range(chunks):
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def scope(with_id: bool) -> dict[str, Any]:
    headers = [
        (b"host", b"gateway"),
        (b"authorization", b"Bearer " + b"t" * 200),
        (b"content-type", b"application/json"),
        (b"accept", b"text/event-stream"),
        (b"user-agent", b"OpenAI/Python 1.0"),
    ]
    if with_id:
        headers.append((b"x-request-id", b"trace-0123456789abcdef0123456789abcdef"))
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}


async def per_request(app: ASGIApp, with_id: bool, requests: int) -> float:
    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(_: Message) -> None:
        return None

    started = time.perf_counter()
    for _ in range(requests):
        # A fresh scope each time, as the server makes one (the middleware adds a header).
        await app(scope(with_id), receive, send)
    return (time.perf_counter() - started) / requests * 1e6


async def main(requests: int, chunks: int) -> None:
    bare = answering(chunks)
    wrapped = RequestIds(bare)
    for with_id in (False, True):
        plain = await per_request(bare, with_id, requests)
        through = await per_request(wrapped, with_id, requests)
        label = "caller's id" if with_id else "id made   "
        print(
            f"{label}: {plain:6.2f} µs bare, {through:6.2f} µs with RequestIds: "
            f"+{through - plain:.2f} µs per request ({chunks} body chunks)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.chunks))
