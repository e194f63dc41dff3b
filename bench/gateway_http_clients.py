"""Which HTTP client should the gateway proxy with: httpx.AsyncClient, aiohttp.ClientSession
or its own (`modelserve.gateway.upstream.UpstreamClient`, HTTP/1.1 over httptools)?

    .venv/bin/python bench/gateway_http_clients.py [--requests 4000] [--chunks 64]
                                                   [--concurrency 1,16,64,256]

Starts a minimal OpenAI-shaped upstream on loopback (a process of its own, a bare asyncio
protocol so that it costs little next to the client under test), then sends it
chat-completion bodies from each client, as the proxy does, under uvloop:

- JSON: a POST answered with a small completion, read whole (a non-streamed request);
- SSE: a POST (to /stream, or asking `"stream":true`) answered with `--chunks` server-sent
  events, each read as it arrives (a streamed request).

Every client gets the same pool size (the largest concurrency). For each client and
concurrency the script prints requests (or chunks) per second and the latency
percentiles, and the CPU the client's process spent per request: on one gateway worker
that CPU time, not the wall clock, caps throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import uvloop

from modelserve.gateway.upstream import UpstreamClient
from modelserve.testbed.measuring import percentile
from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import free_port, port_open

BODY = (
    b'{"model":"smollm2","messages":[{"role":"system","content":"You are terse."},'
    b'{"role":"user","content":"What is the capital of France? Answer in one word."}],'
    b'"max_tokens":16,"temperature":0}'
)
COMPLETION = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"smollm2",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":3,'
    b'"total_tokens":34}}'
)
EVENT = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"smollm2","choices":[{"index":0,"delta":{"content":" token"},'
    b'"finish_reason":null}]}\n\n'
)
HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}

Client = Callable[[bool], Awaitable[int]]


# --- The upstream -----------------------------------------------------------------------


class Upstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length bodies only: what both clients send."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.buffer = b""
        self.transport: asyncio.WriteTransport | None = None
        self.streams: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's.
        assert hasattr(transport, "write")
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            marker = head.find(b"content-length:")
            length = int(head[marker + 15 :].split(b"\r\n", 1)[0]) if marker >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith(b"post /stream") or b'"stream":true' in body:
                task = asyncio.ensure_future(self.stream())
                self.streams.add(task)
                task.add_done_callback(self.streams.discard)
            else:
                self.reply()

    def reply(self) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(COMPLETION), COMPLETION)
        )

    async def stream(self) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (len(EVENT), EVENT)
        for _ in range(self.chunks):
            self.transport.write(chunk)
            await asyncio.sleep(0)  # one event per segment, as a generating server sends them
        done = b"data: [DONE]\n\n"
        self.transport.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))


def serve_upstream(port: int, chunks: int) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Upstream(chunks), "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(run())


# --- The clients ------------------------------------------------------------------------


def httpx_client(base: str, pool: int) -> tuple[Client, Callable[[], Awaitable[None]]]:
    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        timeout=httpx.Timeout(30.0, connect=5.0),
    )

    async def call(stream: bool) -> int:
        if not stream:
            response = await client.post(
                f"{base}/v1/chat/completions", content=BODY, headers=HEADERS
            )
            return len(response.content)
        received = 0
        async with client.stream("POST", f"{base}/stream", content=BODY, headers=HEADERS) as r:
            async for chunk in r.aiter_raw():
                received += len(chunk)
        return received

    return call, client.aclose


def aiohttp_client(base: str, pool: int) -> tuple[Client, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=pool, limit_per_host=pool),
        timeout=aiohttp.ClientTimeout(sock_connect=5.0, sock_read=30.0),
        auto_decompress=False,
    )

    async def call(stream: bool) -> int:
        if not stream:
            async with session.post(
                f"{base}/v1/chat/completions", data=BODY, headers=HEADERS
            ) as response:
                return len(await response.read())
        received = 0
        async with session.post(f"{base}/stream", data=BODY, headers=HEADERS) as response:
            async for chunk in response.content.iter_any():
                received += len(chunk)
        return received

    return call, session.close


def gateway_client(base: str, pool: int) -> tuple[Client, Callable[[], Awaitable[None]]]:
    """The gateway's own, as the proxy uses it (`upstream`)."""
    client = UpstreamClient(connections=pool, connect_timeout=5.0, read_timeout=30.0)

    async def call(stream: bool) -> int:
        if not stream:
            _, body = await client.post(f"{base}/v1/chat/completions", BODY, HEADERS)
            return len(body)
        received = 0
        answer = await client.send(f"{base}/stream", BODY, HEADERS)
        try:
            async for chunk in answer.chunks():
                received += len(chunk)
        except BaseException:
            answer.abort()
            raise
        answer.release()
        return received

    return call, client.close


CLIENTS: dict[str, Callable[[str, int], tuple[Client, Callable[[], Awaitable[None]]]]] = {
    "httpx": httpx_client,
    "aiohttp": aiohttp_client,
    "gateway": gateway_client,
}


# --- Measuring --------------------------------------------------------------------------


async def measure(call: Client, *, stream: bool, requests: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            began = time.perf_counter()
            await call(stream)
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(call(stream) for _ in range(min(concurrency, 32))))  # warm the pool
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "rps": len(latencies) / wall,
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "cpu_us": cpu / len(latencies) * 1e6,
    }


async def run_all(base: str, options: argparse.Namespace) -> None:
    levels = [int(level) for level in options.concurrency.split(",")]
    pool = max(levels)
    for stream in (False, True):
        kind = f"SSE ({options.chunks} events)" if stream else "JSON"
        requests = options.requests // (8 if stream else 1)
        print(f"\n{kind}: {requests} requests per run", flush=True)
        columns = ("req/s", "p50 ms", "p99 ms")
        print(
            f"  {'client':8} {'conc.':>5} " + " ".join(f"{c:>8}" for c in columns) + " CPU µs/req"
        )
        for concurrency in levels:
            for name, make in CLIENTS.items():
                call, close = make(base, pool)
                try:
                    figures = await measure(
                        call, stream=stream, requests=requests, concurrency=concurrency
                    )
                finally:
                    await close()
                extra = f"  ({figures['rps'] * options.chunks:,.0f} events/s)" if stream else ""
                print(
                    f"  {name:8} {concurrency:5d} {figures['rps']:8,.0f} {figures['p50']:8.2f}"
                    f" {figures['p99']:8.2f} {figures['cpu_us']:11,.0f}{extra}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--chunks", type=int, default=64, help="SSE events per streamed answer")
    parser.add_argument("--concurrency", default="1,16,64,256")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)  # the child process
    options = parser.parse_args()
    if options.upstream:
        serve_upstream(options.upstream, options.chunks)
        return

    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, __file__, "--upstream", str(port), "--chunks", str(options.chunks)]
    )
    try:
        wait_for(lambda: port_open(port), timeout=10, what="the upstream")
        print(f"httpx {httpx.__version__}, aiohttp {aiohttp.__version__}, uvloop, loopback")
        uvloop.run(run_all(f"http://127.0.0.1:{port}", options))
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()
