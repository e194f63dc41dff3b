"""An OpenAI-shaped model server whose answers a test writes, on loopback in a thread.

A real model server samples: a test cannot make SmolLM2 give three different candidates with
the best one in the middle, nor hold its answer until the test has seen something through
the gateway. This one can, for the scaling tests:

- `script`: the candidates. A chat completion with `seed` s answers `script[s % len]` (the
  gateway gives the N requests of one scaled request seeds s, s+1, ..., so candidate i of a
  request seeded 0 is `script[i]`, whatever order the requests arrive in); without a seed, the
  next one in turn.
- `gate`: while it is set to an Event, every completion waits for the test to set it (at most
  `gate_seconds`); one never released answers 503, so a gateway that held back what it should
  have sent at once (a buffered stream) ends up with an error instead of the answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from typing import Any

from aiohttp import web

from modelserve.testbed.threaded_http import ThreadedApp


@dataclasses.dataclass(frozen=True)
class Scripted:
    """One candidate: its text and the log-probability of each of its tokens (one per word)."""

    text: str
    logprob: float = -0.5

    def choice(self) -> dict[str, Any]:
        tokens = self.text.split(" ")
        content = [{"token": t, "logprob": self.logprob, "top_logprobs": []} for t in tokens]
        return {
            "index": 0,
            "message": {"role": "assistant", "content": self.text},
            "logprobs": {"content": content},
            "finish_reason": "stop",
        }


class ScriptedServer(ThreadedApp):
    """Serves `served` (its /v1/models) and answers chat completions from `script`."""

    def __init__(self, served: str, script: list[Scripted], gate_seconds: float = 30) -> None:
        super().__init__()
        self.served = served
        self.script = script
        self.gate: threading.Event | None = None
        self.gate_seconds = gate_seconds
        self.requests: list[dict[str, Any]] = []
        self._turn = itertools.count()

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        super().stop()

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.served}]})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        gate = self.gate
        if gate is not None:
            loop = asyncio.get_running_loop()
            released = await loop.run_in_executor(None, gate.wait, self.gate_seconds)
            if not released:
                error = {"message": "the test never released this answer", "type": "gated"}
                return web.json_response({"error": error}, status=503)
        seed = body.get("seed")
        turn = seed if isinstance(seed, int) else next(self._turn)
        scripted = self.script[turn % len(self.script)]
        tokens = len(scripted.text.split(" "))
        usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
        return web.json_response(
            {
                "id": f"chatcmpl-scripted-{turn}",
                "object": "chat.completion",
                "model": self.served,
                "choices": [scripted.choice()],
                "usage": usage,
            }
        )
