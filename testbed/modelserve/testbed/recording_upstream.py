"""An OpenAI-compatible model server for tests of what reaches a model server and of
streams in flight: it records the headers of every chat completion it is asked, and
streams its answer slowly (one chunk per `max_tokens` asked, `chunks` without it,
`chunk_seconds` apart), so that a test can
act while a stream is under way.

    with RecordingUpstream("served-name", chunks=20, chunk_seconds=0.2) as upstream:
        ... upstream.url (its /v1 base), upstream.headers (one dict per request)
"""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import web

from modelserve.testbed.threaded_http import ThreadedApp


def answer_text(chunks: int) -> str:
    """The whole answer a stream of `chunks` chunks spells (a test checks it arrived)."""
    return "".join(f"w{index} " for index in range(chunks))


class RecordingUpstream(ThreadedApp):
    def __init__(self, model: str, *, chunks: int = 5, chunk_seconds: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.chunks = chunks
        self.chunk_seconds = chunk_seconds
        self._lock = threading.Lock()
        self._headers: list[dict[str, str]] = []

    @property
    def headers(self) -> list[dict[str, str]]:
        """The headers (names in lower case) of each chat completion asked so far."""
        with self._lock:
            return list(self._headers)

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        # As the gateway, for the jobs service: a token that is never checked here.
        app.router.add_post("/auth/delegate", self._delegate)
        return app

    async def _delegate(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"access_token": "recorded", "token_type": "bearer", "expires_in": 900}
        )

    async def _models(self, _: web.Request) -> web.Response:
        models = [{"id": self.model, "object": "model"}]
        return web.json_response({"object": "list", "data": models})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._headers.append({name.lower(): value for name, value in request.headers.items()})
        body = await request.json()
        # One chunk (a token) per `max_tokens`, or `chunks` without it.
        chunks = int(body.get("max_tokens") or self.chunks)
        usage = {"prompt_tokens": 4, "completion_tokens": chunks, "total_tokens": 4 + chunks}
        if body.get("stream") is not True:
            message = {"role": "assistant", "content": answer_text(chunks)}
            return web.json_response(
                {
                    "id": "chatcmpl-recorded",
                    "object": "chat.completion",
                    "model": self.model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index in range(chunks):
            await asyncio.sleep(self.chunk_seconds)
            chunk = {
                "id": "chatcmpl-recorded",
                "object": "chat.completion.chunk",
                "model": self.model,
                "choices": [
                    {"index": 0, "delta": {"content": f"w{index} "}, "finish_reason": None}
                ],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        last = {
            "id": "chatcmpl-recorded",
            "object": "chat.completion.chunk",
            "model": self.model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": usage,
        }
        await response.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response
