"""Reading token usage from answers as they pass (pure functions, real answer shapes); the
outbox's retry delays; what scaled requests reserve and count."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelserve.gateway.proxy_requests import answers_per_prompt, max_tokens
from modelserve.gateway.scaled import CallMeter, reservation
from modelserve.gateway.scaling.lm import Usage as LmUsage
from modelserve.gateway.usage import (
    MAX_REPORTED_TOKENS,
    StreamMeter,
    Usage,
    inject_usage,
    usage_from_body,
)
from modelserve.gateway.usage_outbox import retry_delay


def chunk(content: str | None = None, *, usage: dict[str, int] | None = None) -> dict[str, Any]:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}}]
    event: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "choices": choices}
    if usage is not None:
        event["usage"] = usage
    return event


def sse(*events: dict[str, Any], newline: bytes = b"\n\n") -> bytes:
    body = b"".join(b"data: " + json.dumps(e).encode() + newline for e in events)
    return body + b"data: [DONE]" + newline


def test_usage_of_a_whole_answer() -> None:
    answer = {
        "choices": [{"message": {"content": 'a "usage": {"prompt_tokens": 99}'}}],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    assert usage_from_body(json.dumps(answer).encode()) == Usage(12, 5)


def test_usage_of_an_embedding_answer_and_of_none() -> None:
    embedding = {"data": [{"embedding": [0.1] * 1000}], "usage": {"prompt_tokens": 7}}
    assert usage_from_body(json.dumps(embedding).encode()) == Usage(7, 0)
    assert usage_from_body(b'{"choices": []}') is None
    assert usage_from_body(b'{"usage": null}') is None
    assert usage_from_body(b'{"usage": {"prompt_tokens": ') is None


def test_asking_a_stream_for_usage() -> None:
    payload: dict[str, Any] = {"stream": True}
    assert inject_usage(payload)
    assert payload["stream_options"] == {"include_usage": True}
    payload = {"stream": True, "stream_options": {"continuous_usage_stats": False}}
    assert inject_usage(payload)
    assert payload["stream_options"] == {"continuous_usage_stats": False, "include_usage": True}
    payload = {"stream": True, "stream_options": {"include_usage": True}}
    assert not inject_usage(payload)


@pytest.mark.parametrize("newline", [b"\n\n", b"\r\n\r\n"])
def test_the_usage_chunk_nobody_asked_for_is_taken_out(newline: bytes) -> None:
    events = [chunk("Hel"), chunk("lo"), chunk(usage={"prompt_tokens": 9, "completion_tokens": 2})]
    stream = sse(*events, newline=newline)
    meter = StreamMeter(strip_usage=True)
    # Cut the stream anywhere: events are whole again on the way out.
    passed = b"".join(meter.feed(stream[i : i + 7]) for i in range(0, len(stream), 7))
    passed += meter.finish()
    assert passed == sse(chunk("Hel"), chunk("lo"), newline=newline)
    assert meter.reported() == Usage(9, 2)


def test_a_client_that_asked_for_usage_gets_every_byte() -> None:
    stream = sse(chunk("Hi"), chunk(usage={"prompt_tokens": 3, "completion_tokens": 1}))
    meter = StreamMeter(strip_usage=False)
    pieces = [stream[:10], stream[10:50], stream[50:]]
    assert [meter.feed(piece) for piece in pieces] == pieces
    assert meter.finish() == b""
    assert meter.reported() == Usage(3, 1)


def test_a_stream_without_usage_counts_its_text_chunks() -> None:
    role = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    stream = sse(role, chunk("One"), chunk(" two"), chunk(""), chunk(" three"), done)
    meter = StreamMeter(strip_usage=True)
    assert meter.feed(stream) + meter.finish() == stream
    assert meter.reported() == Usage(0, 3)


def test_usage_in_every_chunk_is_read_from_the_last() -> None:
    # vLLM's continuous_usage_stats: usage rides on each chunk; none is taken out.
    events = [
        chunk("a", usage={"prompt_tokens": 4, "completion_tokens": 1}),
        chunk("b", usage={"prompt_tokens": 4, "completion_tokens": 2}),
    ]
    stream = sse(*events)
    meter = StreamMeter(strip_usage=True)
    assert meter.feed(stream) == stream
    assert meter.reported() == Usage(4, 2)


def test_retries_wait_twice_as_long_each_time_up_to_a_cap() -> None:
    delays = [retry_delay(attempts, 1.0, 300.0, 0.0) for attempts in (1, 2, 3, 9, 10, 100_000)]
    assert delays == [1.0, 2.0, 4.0, 256.0, 300.0, 300.0]
    # The jitter takes at most a tenth off, never adds.
    assert 0.9 * 16 <= retry_delay(5, 1.0, 300.0, 1.0) < 16


def test_a_scaled_request_reserves_for_every_candidate() -> None:
    assert reservation(None, 3, 512) == 1536
    assert reservation(100, 3, 512) == 300
    assert reservation(0, 4, 512) == 0
    # Step-wise without max_tokens: each path may grow to 16 steps of 256 tokens.
    assert reservation(None, 3, 512, stepwise=True) == 3 * 16 * 256
    assert reservation(100, 3, 512, stepwise=True) == 300


def test_the_length_held_is_the_one_the_server_reads_for_every_answer() -> None:
    assert max_tokens({"max_tokens": 8}) == 8
    assert max_tokens({"max_tokens": 8, "max_completion_tokens": 20}) == 20
    assert max_tokens({"max_tokens": 1, "n_predict": 200}) == 200  # llama.cpp reads it first
    assert max_tokens({"max_tokens": 1, "n_predict": -1}) is None  # no limit: the default
    assert max_tokens({"max_tokens": True}) is None
    assert answers_per_prompt({}) == 1
    assert answers_per_prompt({"n": 16}) == 16
    assert answers_per_prompt({"n": 2, "best_of": 5}) == 5
    assert answers_per_prompt({"n": True}) == 1


def test_each_answered_call_counts_with_the_tokens_it_reports() -> None:
    meter = CallMeter()
    meter.count({"usage": {"prompt_tokens": 10, "completion_tokens": 5}})
    meter.count({"usage": {"prompt_tokens": 7}})  # a pooling answer
    meter.count({"choices": []})  # no usage: one call, no tokens
    meter.count({"usage": {"prompt_tokens": -3, "completion_tokens": "many"}})
    assert meter.used == LmUsage(calls=4, prompt_tokens=17, completion_tokens=5)


def test_a_count_no_model_could_report_is_clamped_not_trusted() -> None:
    """An `external` server is someone's: 10^23 tokens would overflow every counter the
    contract keeps (and leave the record undeliverable)."""
    huge = b'{"usage": {"prompt_tokens": 99999999999999999999999, "completion_tokens": 7}}'
    assert usage_from_body(huge) == Usage(MAX_REPORTED_TOKENS, 7)
    assert usage_from_body(b'{"usage": {"prompt_tokens": true, "completion_tokens": -3}}') == (
        Usage(0, 0)
    )
