"""`StreamMeter` cuts a stream at its last complete event, whichever of SSE's three line
ends it uses: checked against the rule written plainly, on streams of random pieces cut
at random places (what each chunk passes on, and what is counted)."""

from __future__ import annotations

import random

from modelserve.gateway.usage import StreamMeter

SEPARATORS = (b"\n\n", b"\r\n\r\n", b"\r\r")
PIECES = (
    b"\n",
    b"\r",
    b"\n\n",
    b"\r\n\r\n",
    b"\r\r",
    b"data: ",
    b'{"choices":[{"delta":{"content":"x"}}]}',
    b'"text": "y"',
    b'"usage":{"prompt_tokens":3,"completion_tokens":4}',
    b"data: [DONE]",
)


def last_event_end(data: bytes) -> int:
    """The rule: the end of the last separator of any kind; 0 when there is none."""
    ends = [data.rfind(s) + len(s) for s in SEPARATORS if data.rfind(s) >= 0]
    return max(ends, default=0)


def test_each_chunk_passes_on_its_complete_events_and_keeps_the_rest() -> None:
    chooser = random.Random(7)
    for _ in range(3000):
        stream = b"".join(chooser.choice(PIECES) for _ in range(chooser.randint(0, 20)))
        cuts = sorted(chooser.sample(range(len(stream) + 1), min(len(stream) + 1, 3)))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        meter, pending, read = StreamMeter(strip_usage=True), b"", 0
        for chunk in chunks:
            data, read = pending + chunk, read + len(chunk)
            end = last_event_end(data)
            passed = meter.feed(chunk)
            if b'"usage"' not in data[:end]:  # nothing to take out: the events as they came
                assert passed == data[:end]
            complete = stream[: read - len(data) + end]  # every event ended so far
            assert meter.done == (b"data: [DONE]" in complete)
            pending = data[end:]
        assert meter.finish() == pending
