"""An OpenAI-shaped model server on loopback whose every answer reports the same known
usage, so that a test can count what the contract service should have recorded: the fault
tests' stand-in for a model server, which is not what they break."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from modelserve.testbed.threaded_http import ThreadedApp

# What every answer reports.
PROMPT_TOKENS, COMPLETION_TOKENS = 10, 5


def _event(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class MeteredServer(ThreadedApp):
    """Lists `models` at GET /v1/models; a chat completion (any model) answers at once, or
    as a stream of `stream_chunks` chunks `chunk_seconds` apart, then the usage chunk."""

    def __init__(
        self, models: tuple[str, ...], *, stream_chunks: int = 40, chunk_seconds: float = 0.1
    ) -> None:
        super().__init__()
        self.models = models
        self.stream_chunks = stream_chunks
        self.chunk_seconds = chunk_seconds

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._answer)
        return app

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m} for m in self.models]})

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
        if not body.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": "5"},
                "finish_reason": "stop",
            }
            return web.json_response({"choices": [choice], "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index in range(self.stream_chunks):
            delta = {"index": 0, "delta": {"content": f" {index}"}}
            await response.write(_event({"object": "chat.completion.chunk", "choices": [delta]}))
            await asyncio.sleep(self.chunk_seconds)
        last = {"object": "chat.completion.chunk", "choices": [], "usage": usage}
        await response.write(_event(last))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
