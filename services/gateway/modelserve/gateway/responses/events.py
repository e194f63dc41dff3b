"""A chat completion's stream as the Responses API's typed events.

Chat's `data:` chunks go in, in whatever pieces the network cut them; Responses'
`event:`/`data:` pairs come out, numbered by `sequence_number`: `response.created` and
`response.in_progress` first; for the text, `response.output_item.added` (a `message`),
`response.content_part.added`, one `response.output_text.delta` per chunk, then the
`.done` events; for each tool call, `response.output_item.added` (a `function_call`),
`response.function_call_arguments.delta` per piece, then its `.done` events; last
`response.completed` (or `response.incomplete` when the answer hit `max_output_tokens`)
with the whole Response and its usage (and a scaled stream's trace, when asked, as its
`scaling`). An error in chat's stream becomes an `error`
event, and nothing follows it. SSE comments (the gateway's keep-alives while a model
loads or candidates are generated) pass through as they are.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from modelserve.gateway.responses.answers import (
    IdMaker,
    call_item,
    message_item,
    new_id,
    response_object,
    response_usage,
    text_part,
)


@dataclasses.dataclass
class _Item:
    """An output item being streamed: the message's text, or a call's arguments."""

    item_id: str
    index: int  # its output_index
    call_id: str | None = None  # None: the message
    name: str = ""
    pieces: list[str] = dataclasses.field(default_factory=list)
    done: bool = False

    def whole(self, status: str = "completed") -> dict[str, Any]:
        text = "".join(self.pieces)
        if self.call_id is None:
            return message_item(self.item_id, text, status)
        return call_item(self.item_id, self.call_id, self.name, text, status)


class StreamTranslator:
    """One stream's translation: `feed` each chunk of chat's stream as it comes, then
    `finish` once it ended; each returns the bytes to send on."""

    def __init__(
        self, request: dict[str, Any], new: IdMaker = new_id, now: float | None = None
    ) -> None:
        self._request = request
        self._new = new
        self._id = new("resp")
        self._created = int(now if now is not None else time.time())
        self._sequence = 0
        self._pending = b""
        self._started = False
        self._ended = False  # completed, incomplete, or failed: nothing follows
        self._items: list[_Item] = []
        self._message: _Item | None = None  # the message item while it is open
        self._calls: dict[int, _Item] = {}  # by chat's tool-call index
        self._usage: Any = None
        self._finish: str | None = None
        self._scaling: Any = None  # a scaled stream's trace, when asked

    def feed(self, chunk: bytes) -> bytes:
        out = self._start()
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            out += self._line(line.rstrip(b"\r"))
        return out

    def finish(self) -> bytes:
        """The events that end the stream (none if an error or an end came already)."""
        out = self._start()
        if self._pending:
            out += self._line(self._pending.rstrip(b"\r"))
            self._pending = b""
        return out + self._end()

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        response = self._response("in_progress")
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def _line(self, line: bytes) -> bytes:
        if line.startswith(b":"):
            return line + b"\n\n"  # a comment: a keep-alive
        if not line.startswith(b"data:") or self._ended:
            return b""
        data = line[5:].strip()
        if data == b"[DONE]":
            return self._end()
        try:
            chunk = json.loads(data)
        except ValueError:
            return b""
        if not isinstance(chunk, dict):
            return b""
        if isinstance(chunk.get("error"), dict):
            return self._error(chunk["error"])
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        if chunk.get("scaling") is not None:
            self._scaling = chunk["scaling"]
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return b""
        out = b""
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out += self._choice(choice)
        return out

    def _choice(self, choice: dict[str, Any]) -> bytes:
        out = b""
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        content = delta.get("content")
        if isinstance(content, str) and content:
            out += self._text(content)
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                out += self._call(call)
        if choice.get("finish_reason"):
            self._finish = str(choice["finish_reason"])
        return out

    def _text(self, content: str) -> bytes:
        out = b""
        message = self._message
        if message is None:
            message = self._message = self._open(None)
            out += self._event(
                "response.output_item.added",
                output_index=message.index,
                item=message.whole("in_progress"),
            )
            out += self._event(
                "response.content_part.added",
                item_id=message.item_id,
                output_index=message.index,
                content_index=0,
                part=text_part(""),
            )
        message.pieces.append(content)
        return out + self._event(
            "response.output_text.delta",
            item_id=message.item_id,
            output_index=message.index,
            content_index=0,
            delta=content,
            logprobs=[],
        )

    def _call(self, call: dict[str, Any]) -> bytes:
        out = b""
        index = call.get("index", 0)
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        item = self._calls.get(index)
        if item is None:
            out += self._close_message()
            call_id = call.get("id") if isinstance(call.get("id"), str) else self._new("call")
            item = self._calls[index] = self._open(call_id)
            item.name = function.get("name") or ""
            out += self._event(
                "response.output_item.added",
                output_index=item.index,
                item=item.whole("in_progress"),
            )
        elif function.get("name") and not item.name:
            item.name = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.pieces.append(arguments)
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=item.item_id,
                output_index=item.index,
                delta=arguments,
            )
        return out

    def _open(self, call_id: str | None) -> _Item:
        item = _Item(self._new("msg" if call_id is None else "fc"), len(self._items), call_id)
        self._items.append(item)
        return item

    def _close_message(self) -> bytes:
        message = self._message
        if message is None:
            return b""
        self._message = None
        message.done = True
        text = "".join(message.pieces)
        where = {"item_id": message.item_id, "output_index": message.index, "content_index": 0}
        return (
            self._event("response.output_text.done", **where, text=text, logprobs=[])
            + self._event("response.content_part.done", **where, part=text_part(text))
            + self._event(
                "response.output_item.done", output_index=message.index, item=message.whole()
            )
        )

    def _close_call(self, item: _Item) -> bytes:
        item.done = True
        arguments = "".join(item.pieces)
        return self._event(
            "response.function_call_arguments.done",
            item_id=item.item_id,
            output_index=item.index,
            name=item.name,
            arguments=arguments,
        ) + self._event("response.output_item.done", output_index=item.index, item=item.whole())

    def _end(self) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        out = self._close_message()
        for item in self._items:
            if not item.done:
                out += self._close_call(item)
        length = self._finish == "length"
        response = self._response(
            "incomplete" if length else "completed",
            [item.whole() for item in self._items],
            response_usage(self._usage),
            "max_output_tokens" if length else None,
        )
        if self._scaling is not None:
            response["scaling"] = self._scaling
        kind = "response.incomplete" if length else "response.completed"
        return out + self._event(kind, response=response)

    def _error(self, error: dict[str, Any]) -> bytes:
        self._ended = True
        message = error.get("message")
        return self._event(
            "error",
            code=error.get("code"),
            message=message if isinstance(message, str) else "the model server failed",
            param=error.get("param"),
            # OpenAI clients that read errors from `data.error` find it there too.
            error=error,
        )

    def _response(
        self,
        status: str,
        output: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        incomplete: str | None = None,
    ) -> dict[str, Any]:
        return response_object(
            self._request,
            response_id=self._id,
            created_at=self._created,
            status=status,
            output=output or [],
            usage=usage,
            incomplete_reason=incomplete,
        )

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
