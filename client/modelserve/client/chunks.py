"""A streamed chat completion, read: server-sent events whose data is one OpenAI
`chat.completion.chunk` each, ending with `[DONE]`. An event whose data is an
`{"error": …}` (a failure after the answer began) raises. Pure: the clients feed it the
lines they read."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from modelserve.client.answers import ChatChunk
from modelserve.client.errors import ModelServeError

DONE = "[DONE]"


class ChunkReader:
    """Server-sent event lines in, `ChatChunk`s out: `feed` each line (without its line
    break) and get the chunk its event ends, if any. `done` once `[DONE]` came; comments
    (`: keep-alive`) and fields other than `data` are skipped."""

    def __init__(self) -> None:
        self.done = False
        self._data: list[str] = []

    def feed(self, line: str) -> ChatChunk | None:
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
            return None
        if line or not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        if data == DONE:
            self.done = True
            return None
        try:
            body: Any = json.loads(data)
        except ValueError as problem:
            raise ModelServeError("unexpected_answer", f"a chat chunk: {problem}") from problem
        failure = body.get("error") if isinstance(body, dict) else None
        if isinstance(failure, dict):
            code = failure.get("code") or failure.get("type") or "stream_error"
            raise ModelServeError(str(code), str(failure.get("message") or ""), None, failure)
        try:
            return ChatChunk.model_validate(body)
        except ValidationError as problem:
            raise ModelServeError("unexpected_answer", f"a chat chunk: {problem}") from problem


def unfinished() -> ModelServeError:
    return ModelServeError("unexpected_answer", "the chat's stream ended before [DONE]")
