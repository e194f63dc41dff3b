"""Token usage of a proxied answer, read as it goes by without holding it up.

- A whole (non-streamed) answer carries `usage`; only that object is parsed, so a large
  embedding answer is not decoded for three numbers.
- A stream reports usage in a last chunk when asked (`stream_options.include_usage`).
  The proxy asks for it when the client did not (`inject_usage`), and then `StreamMeter`
  takes that extra chunk out, so the client receives what it asked for.
  `inject_usage` leaves other chunks untouched: a server that also writes
  `"usage": null` into every chunk (OpenAI's own API does) passes those through, which
  OpenAI's clients read as no usage, as they would without the option.
- A server that reports no usage in a stream (llama-cpp-python ignores the option) is
  counted by its chunks that carry text: one token per chunk, which is how llama.cpp
  and vLLM stream; an estimate, and no prompt tokens.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

_DECODER = json.JSONDecoder()
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_TEXT = re.compile(rb'"(?:content|text)"\s*:\s*"[^"]')
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


_SEPARATORS = (b"\n\n", b"\r\n\r\n", b"\r\r")


def _last_event_end(data: bytes) -> int:
    """Where the last complete event of `data` ends (0: none is complete)."""
    found = data.rfind(b"\n\n")
    end = found + 2 if found >= 0 else 0
    if b"\r" in data:  # the other separators have one (most streams have none)
        for separator in _SEPARATORS[1:]:
            found = data.rfind(separator)
            if found >= 0:
                end = max(end, found + len(separator))
    return end


@dataclasses.dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


# The most tokens one answer is believed to report, each of prompt and completion (an
# int32: no model's context is longer). A server that reports more (an `external` one of
# someone's, say) is counted this much, not enough to overflow a counter.
MAX_REPORTED_TOKENS = 2**31 - 1


def reported_tokens(value: Any) -> int:
    """A token count as a model server reported it: 0 for anything but a non-negative
    integer, at most MAX_REPORTED_TOKENS."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return 0
    return min(value, MAX_REPORTED_TOKENS)


def _usage(found: Any) -> Usage | None:
    if not isinstance(found, dict):
        return None
    prompt, completion = found.get("prompt_tokens"), found.get("completion_tokens")
    return Usage(reported_tokens(prompt), reported_tokens(completion))


def usage_from_body(body: bytes) -> Usage | None:
    """The `usage` of a whole JSON answer (it comes last, so it is searched from the end)."""
    start = body.rfind(b'"usage"')
    if start < 0:
        return None
    match = _USAGE.match(body, start)
    if match is None:
        return None
    try:
        found, _ = _DECODER.raw_decode(body[match.end() - 1 :].decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return _usage(found)


def inject_usage(payload: dict[str, Any]) -> bool:
    """Ask a streamed request's server to report usage; True when the client had not."""
    options = payload.get("stream_options")
    if options is None:
        payload["stream_options"] = {"include_usage": True}
        return True
    if isinstance(options, dict) and not options.get("include_usage"):
        payload["stream_options"] = {**options, "include_usage": True}
        return True
    return False


class StreamMeter:
    """Watches server-sent events go by: the usage a stream reports, or its text chunks.

    `feed` returns what to pass on. Without `strip_usage` that is the chunk itself, at
    once; with it, whole events, so that the usage-only event the client did not ask for
    can be left out (an event is of no use to a client before its end anyway).
    """

    def __init__(self, *, strip_usage: bool) -> None:
        self._strip = strip_usage
        self._pending = b""
        self.usage: Usage | None = None
        self.text_chunks = 0
        self.done = False  # the stream's last event, `data: [DONE]`, went by

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        cut = _last_event_end(data)
        self._pending = data[cut:]
        # Searched within the complete events without copying them (every chunk of
        # every stream comes through here).
        if not self.done and data.find(b"data: [DONE]", 0, cut) >= 0:
            self.done = True
        if data.find(b'"usage"', 0, cut) < 0:
            # The common case, kept to a few scans in C over the whole chunk: no event
            # here reports usage, so none is split out; text events are only counted.
            self.text_chunks += len(_TEXT.findall(data, 0, cut))
            if not self._strip:
                return chunk
            return data if cut == len(data) else data[:cut]
        passed: list[bytes] = []
        start = 0
        for end in _EVENT_END.finditer(data, 0, cut):
            event = data[start : end.end()]
            start = end.end()
            if self._scan(event) and self._strip:
                continue
            passed.append(event)
        if not self._strip:
            return chunk
        return b"".join(passed)

    def finish(self) -> bytes:
        """What is left at the end of the stream (an event without its blank line)."""
        rest, self._pending = self._pending, b""
        if rest:
            self._scan(rest)
        return rest if self._strip else b""

    def _scan(self, event: bytes) -> bool:
        """Count `event`; True when it is a usage-only event (no choices)."""
        if _USAGE.search(event) is None:
            if _TEXT.search(event) is not None:
                self.text_chunks += 1
            return False
        data = event.strip()
        if data.startswith(b"data:"):
            data = data[5:]
        try:
            found = json.loads(data)
        except ValueError:
            return False
        if not isinstance(found, dict):
            return False
        usage = _usage(found.get("usage"))
        if usage is not None:
            self.usage = usage
        if found.get("choices"):
            if _TEXT.search(event) is not None:
                self.text_chunks += 1
            return False
        return usage is not None

    def reported(self) -> Usage:
        """The usage the stream reported, else the estimate from its text chunks."""
        return self.usage or Usage(0, self.text_chunks)
