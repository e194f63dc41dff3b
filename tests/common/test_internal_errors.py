"""The answer to an exception no handler took, on a tiny app built like every service:
a JSON 500 that names the request's id and holds no traceback. (Unit test of the one
handler; the services' schema sweeps check that no real route answers 5xx.)"""

from __future__ import annotations

import asyncio

import httpx

from modelserve.common.service import create_service_app
from modelserve.common.settings import ServiceSettings


class TinySettings(ServiceSettings):
    port: int = 1


def tiny_app() -> httpx.AsyncClient:
    app = create_service_app("tiny", TinySettings())

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("secret detail: password=hunter2")

    # Starlette raises the exception again after answering (for the server to log it).
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://tiny")


def test_an_unexpected_error_is_a_json_500_with_the_request_id() -> None:
    async def scenario() -> httpx.Response:
        async with tiny_app() as client:
            return await client.get("/broken", headers={"X-Request-ID": "req-42"})

    answer = asyncio.run(scenario())
    assert answer.status_code == 500
    body = answer.json()
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["request_id"] == "req-42"
    assert answer.headers["x-request-id"] == "req-42"
    assert "hunter2" not in answer.text and "Traceback" not in answer.text


def test_every_answer_names_its_request_id() -> None:
    async def scenario() -> list[httpx.Response]:
        async with tiny_app() as client:
            return [
                await client.get("/health", headers={"X-Request-ID": "caller-id_1.2:3"}),
                await client.get("/health", headers={"X-Request-ID": "bad id"}),
                await client.get("/health", headers={"X-Request-ID": "x" * 129}),
                await client.get("/health"),
            ]

    kept, spaced, long, none = asyncio.run(scenario())
    assert kept.headers["x-request-id"] == "caller-id_1.2:3"
    made = [answer.headers["x-request-id"] for answer in (spaced, long, none)]
    assert all(len(found) == 32 for found in made) and len(set(made)) == 3
