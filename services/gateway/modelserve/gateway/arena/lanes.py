"""One side of a battle: the gateway's own response to a streamed chat completion (the
proxy's, or the scaler's for a model with scaling defaults) run in this process as if a
client had asked for it, its server-sent events read back as they come.

Everything a client's request gets, a lane gets: the contract's decision and usage, a
sleeping model woken (the stream's head and keep-alive comments while it loads), the
proxy's errors. What the lane passes on carries nothing of the model's identity: text,
finish reasons, and errors by their code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from enum import StrEnum
from typing import Any

from starlette.types import Message

from modelserve.gateway.asgi import ExchangeResponse

logger = logging.getLogger(__name__)


class Kind(StrEnum):
    LOADING = "loading"  # the model is being woken
    WAITING = "waiting"  # a keep-alive while candidates are generated (a scaled model)
    DELTA = "delta"  # a piece of the answer
    DONE = "done"  # the answer is whole
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class LaneEvent:
    side: str
    kind: Kind
    content: str = ""
    finish_reason: str | None = None
    code: str | None = None  # why it failed (an OpenAI error code)
    status: int | None = None  # the HTTP status of a failure


@dataclasses.dataclass
class Lane:
    """Runs `response` and puts what it says on `events` as LaneEvents, ending with one
    DONE or FAILED. `stop` set: the response is told that its client went away."""

    side: str
    response: ExchangeResponse
    events: asyncio.Queue[LaneEvent]
    stop: asyncio.Event
    text: str = ""
    finish_reason: str | None = None
    _status: int = 0
    _stream: bool = False
    _buffer: bytes = b""
    _ended: bool = False

    async def run(self) -> None:
        try:
            await self.response({"type": "http"}, self._receive, self._send)
        except Exception as error:
            # A bug of ours, not the model's: the lane fails (the battle is void), logged.
            logger.exception("arena lane %s failed", self.side)
            self._end(Kind.FAILED, code="arena_lane_failed", status=500, detail=str(error))
            return
        if self._ended:
            return
        if self._status == 200 and self._stream:
            # The stream ended without [DONE] (the lane stopped, or the server cut it).
            self._end(Kind.FAILED, code="answer_incomplete", status=502)
        elif self._status == 200:
            self._whole(self._buffer)
        else:
            self._failed_answer(self._buffer)

    async def _receive(self) -> Message:
        await self.stop.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if self._ended:
            return
        if message["type"] == "http.response.start":
            self._status = message["status"]
            # Header names as the model server wrote them (the proxy passes its head on).
            headers = {name.lower(): value for name, value in message.get("headers") or []}
            self._stream = headers.get(b"content-type", b"").startswith(b"text/event-stream")
            return
        if message["type"] != "http.response.body":
            return
        self._buffer += message.get("body", b"")
        if self._status != 200 or not self._stream:
            return  # a whole answer: read once it is complete
        while not self._ended:
            block, sep, rest = self._buffer.partition(b"\n\n")
            if not sep:
                break
            self._buffer = rest
            self._event(block)

    def _event(self, block: bytes) -> None:
        for line in block.decode(errors="replace").splitlines():
            if line.startswith(":"):
                kind = Kind.LOADING if "loading" in line else Kind.WAITING
                self._put(LaneEvent(self.side, kind))
                continue
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                self._end(Kind.DONE)
                return
            try:
                chunk = json.loads(data)
            except ValueError:
                self._end(Kind.FAILED, code="malformed_answer", status=502, detail=data[:200])
                return
            if isinstance(chunk, dict) and "error" in chunk:
                self._failed_error(chunk["error"], 502)
                return
            self._chunk(chunk)

    def _chunk(self, chunk: Any) -> None:
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        for choice in choices or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                self.text += content
                self._put(LaneEvent(self.side, Kind.DELTA, content=content))
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]

    def _whole(self, body: bytes) -> None:
        """A 200 that is not a stream: a whole chat.completion (a held request's server
        answered without one), or nonsense."""
        try:
            answer = json.loads(body)
            choice = answer["choices"][0]
            content = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            self._end(Kind.FAILED, code="malformed_answer", status=502)
            return
        if content:
            self.text += str(content)
            self._put(LaneEvent(self.side, Kind.DELTA, content=str(content)))
        self.finish_reason = choice.get("finish_reason") or "stop"
        self._end(Kind.DONE)

    def _failed_answer(self, body: bytes) -> None:
        try:
            found = json.loads(body)
        except ValueError:
            found = None
        error = found.get("error") if isinstance(found, dict) else None
        self._failed_error(error, self._status or 502)

    def _failed_error(self, error: Any, status: int) -> None:
        code = error.get("code") if isinstance(error, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        self._end(
            Kind.FAILED,
            code=str(code or "upstream_error"),
            status=status,
            detail=str(detail or ""),
        )

    def _end(
        self, kind: Kind, *, code: str | None = None, status: int | None = None, detail: str = ""
    ) -> None:
        if self._ended:
            return
        self._ended = True
        if kind is Kind.FAILED:
            # The message names the server: for the log, not for the anonymous battle.
            logger.warning("arena lane %s failed (%s, %s): %s", self.side, status, code, detail)
            self._put(LaneEvent(self.side, kind, code=code, status=status))
        else:
            self._put(LaneEvent(self.side, kind, finish_reason=self.finish_reason or "stop"))

    def _put(self, event: LaneEvent) -> None:
        self.events.put_nowait(event)
