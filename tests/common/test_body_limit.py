"""The cap on request bodies of services that read them whole (`BodyLimit`), on a real
uvicorn server on loopback: declared or streamed, a body over the cap is 413 before the
app has it; an exempt path streams as it likes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from modelserve.common.body_limit import BodyLimit
from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import free_port

LIMIT = 4096


def app() -> FastAPI:
    made = FastAPI()
    made.add_middleware(BodyLimit, limit=LIMIT, streamed=("/upload",))

    @made.post("/json")
    async def whole(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @made.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    return made


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app(), host="127.0.0.1", port=port, log_level="error"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10, what="the test server to listen")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


async def chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 1024):
        yield b"x" * 1024


def test_a_body_within_the_cap_reaches_the_app(url: str) -> None:
    assert httpx.post(f"{url}/json", content=b"x" * LIMIT).json() == {"size": LIMIT}


def test_a_declared_or_streamed_body_over_the_cap_is_413(url: str) -> None:
    declared = httpx.post(f"{url}/json", content=b"x" * (LIMIT + 1))
    assert declared.status_code == 413
    error = declared.json()["error"]
    assert (error["code"], error["type"]) == ("body_too_large", "invalid_request_error")

    async def streamed() -> httpx.Response:
        async with httpx.AsyncClient() as client:  # chunked: no Content-Length
            return await client.post(f"{url}/json", content=chunks(64 * 1024))

    answer = asyncio.run(streamed())
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "body_too_large"


def test_an_exempt_path_streams_past_the_cap(url: str) -> None:
    async def streamed() -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.post(f"{url}/upload", content=chunks(64 * 1024))

    assert asyncio.run(streamed()).json() == {"size": 64 * 1024}
