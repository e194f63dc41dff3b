"""An OpenAI-compatible model server on loopback whose faults a test turns on and off:
each model answers at its own base URL (`base_url(model)`, for an `external` ModelServe), and
`set(model, mode)` makes it well (`ok`), answer chat completions with 500 (`error`),
never answer them (`hang`), or answer everything, its model list included, with 500
(`down`, what the operator's probe sees as a sick server).

A streamed answer is sent in lock-step with the test: chunk i+1 leaves only after the
test called `next_chunk()`, so a test sees whether a proxy passes each chunk on as it
comes (a buffering proxy delivers nothing until the stream has ended, and never gets
there)."""

from __future__ import annotations

import asyncio
import collections
import json
import threading

from aiohttp import web

from modelserve.testbed.threaded_http import ThreadedApp

# What every good answer reports.
PROMPT_TOKENS, COMPLETION_TOKENS = 10, 5
# What a failing server says; a proxy must keep it to its log (it can hold paths, keys).
SECRET_TEXT = "CUDA out of memory at /srv/private/weights.bin"
MODES = ("ok", "error", "hang", "down")


def _chunk(index: int, last: bool) -> bytes:
    choice = {
        "index": 0,
        "delta": {"content": f" {index}"},
        "finish_reason": "stop" if last else None,
    }
    event = {"id": "s", "object": "chat.completion.chunk", "choices": [choice]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


class FaultyServer(ThreadedApp):
    """Serves `models`, every one `ok` to begin with."""

    def __init__(self, models: tuple[str, ...], chunks: int = 8) -> None:
        super().__init__()
        self.models = models
        self.chunks = chunks
        self._modes = dict.fromkeys(models, "ok")
        self._lock = threading.Lock()
        self._gate = threading.Semaphore(0)
        self.calls: collections.Counter[str] = collections.Counter()
        self.hanging = threading.Event()

    def base_url(self, model: str) -> str:
        """The OpenAI base URL of `model`."""
        return f"http://127.0.0.1:{self.port}/{model}/v1"

    def set(self, model: str, mode: str) -> None:
        assert mode in MODES, mode
        with self._lock:
            self._modes[model] = mode

    def mode(self, model: str) -> str:
        with self._lock:
            return self._modes[model]

    def next_chunk(self) -> None:
        """Let the stream in progress send its next chunk."""
        self._gate.release()

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{model}/v1/models", self._list)
        app.router.add_post("/{model}/v1/chat/completions", self._chat)
        return app

    async def _list(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model not in self._modes:
            raise web.HTTPNotFound()
        if self.mode(model) == "down":
            return web.json_response({"error": {"message": SECRET_TEXT}}, status=500)
        return web.json_response({"object": "list", "data": [{"id": model, "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        if model not in self._modes:
            raise web.HTTPNotFound()
        body = await request.json()
        self.calls[model] += 1
        mode = self.mode(model)
        if mode in ("error", "down"):
            return web.json_response({"error": {"message": SECRET_TEXT}}, status=500)
        if mode == "hang":
            self.hanging.set()
            await asyncio.sleep(3600)  # cancelled when the client goes away
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for index in range(self.chunks):
                # Bounded: a test that stopped reading does not hold the server.
                if index and not await asyncio.to_thread(self._gate.acquire, True, 60):
                    return response
                await response.write(_chunk(index, index == self.chunks - 1))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": "5"},
            "finish_reason": "stop",
        }
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
        return web.json_response(
            {
                "id": "c",
                "object": "chat.completion",
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
        )
