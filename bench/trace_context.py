"""What W3C trace context costs the gateway per request: an ASGI request (a chat
completion's headers, a streamed answer of `--chunks` body messages) whose app makes
`--calls` upstream calls, each opening a child span and formatting its headers as
`upstream.UpstreamClient.send` does, sent

- through the app alone (no span: each call finds none and sends no header),
- through `TraceContext` with the plain tracer (ids only: the gateway without a
  collector), with and without the caller's `traceparent` and `tracestate`,
- through `TraceContext` with the SDK's tracer (`otlp_export`), exporting in batches
  to a collector stand-in in a process of its own (an HTTP server that answers 200 to
  every POST): the cost of recording, the export thread's work included;
- for scale, through `RequestIds` alone, the middleware every request already takes.

Prints CPU microseconds per request (the process's, all its threads: the export thread
too; CPU time, not wall time, so that other work on the machine counts less) and the
difference to the app alone, and the cost of the parse of one `traceparent` and the
format of one. The SDK's queue is made large enough to keep every span (its default,
2,048, drops spans when requests come faster than a collector takes them, and a dropped
span costs less than an exported one).

    .venv/bin/python bench/trace_context.py [--requests 20000] [--chunks 20] [--calls 1]
        [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import http.server
import multiprocessing
import os
import time
import timeit
from collections.abc import Iterator
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.common.request_ids import RequestIds
from modelserve.common.trace_context import (
    TraceContext,
    Tracer,
    call_span,
    format_traceparent,
    open_tracer,
    parse_traceparent,
)
from modelserve.testbed.processes import free_port

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def answering(chunks: int, calls: int) -> ASGIApp:
    """An app that makes `calls` upstream calls (their headers made, as the proxy's
    client makes them) and answers at once."""
    base = {"Content-Type": "application/json", "Accept-Encoding": "identity"}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for _ in range(calls):
            span = call_span("POST", "http://model-server/v1/chat/completions")
            headers = {**base, **span.headers()} if span is not None else base
            assert headers
            if span is not None:
                span.end(200)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]})
        for _ in range(chunks):
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def scope(with_parent: bool) -> dict[str, Any]:
    headers = [
        (b"host", b"gateway"),
        (b"authorization", b"Bearer " + b"t" * 200),
        (b"content-type", b"application/json"),
        (b"accept", b"text/event-stream"),
        (b"user-agent", b"OpenAI/Python 1.0"),
        (b"x-request-id", b"0123456789abcdef0123456789abcdef"),
    ]
    if with_parent:
        headers += [(b"traceparent", TRACEPARENT), (b"tracestate", b"rojo=00f067aa0ba902b7")]
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}


async def per_request(app: ASGIApp, with_parent: bool, requests: int) -> float:
    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(_: Message) -> None:
        return None

    async def run() -> float:
        started = time.process_time()
        for _ in range(requests):
            await app(scope(with_parent), receive, send)
        return (time.process_time() - started) / requests * 1e6

    # In a context of its own, as each request has: no span left from another run.
    return await asyncio.create_task(run(), context=contextvars.Context())


class _Accepting(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


def _serve(port: int) -> None:
    http.server.ThreadingHTTPServer(("127.0.0.1", port), _Accepting).serve_forever()


@contextlib.contextmanager
def collector() -> Iterator[str]:
    """A stand-in collector on loopback, in a process of its own (its work is not the
    gateway's); its base URL."""
    port = free_port()
    process = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join()


async def main(requests: int, chunks: int, calls: int, rounds: int) -> None:
    """Each way `rounds` times, in turn, the fastest round of each printed: other work on
    the machine slows a round down, never speeds it up."""
    app = answering(chunks, calls)
    os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", str(8 * requests * (calls + 1)))
    with collector() as endpoint:
        tracer = open_tracer(endpoint, "bench")
        try:
            ways: dict[str, tuple[ASGIApp, bool]] = {
                "app alone": (app, False),
                "RequestIds, for scale": (RequestIds(app), False),
                "ids only, new trace": (TraceContext(app, Tracer()), False),
                "ids only, caller's traceparent": (TraceContext(app, Tracer()), True),
                "SDK export, new trace": (TraceContext(app, tracer), False),
                "SDK export, caller's traceparent": (TraceContext(app, tracer), True),
            }
            best = dict.fromkeys(ways, float("inf"))
            for _ in range(rounds):
                for label, (way, with_parent) in ways.items():
                    found = await per_request(way, with_parent, requests)
                    best[label] = min(best[label], found)
        finally:
            tracer.close()
    bare = best["app alone"]
    print(f"{requests} requests a round, best of {rounds}; {calls} calls, {chunks} chunks each")
    for label, found in best.items():
        print(f"{label:34} {found:7.2f} µs per request, +{found - bare:.2f} µs")
    rounds = 200_000
    timer = time.process_time
    parse = timeit.timeit(lambda: parse_traceparent(TRACEPARENT), timer, number=rounds)
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    made = timeit.timeit(lambda: format_traceparent(trace_id, span_id, 1), timer, number=rounds)
    print(
        f"parse_traceparent: {parse / rounds * 1e6:.3f} µs; "
        f"format_traceparent: {made / rounds * 1e6:.3f} µs"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.chunks, args.calls, args.rounds))
