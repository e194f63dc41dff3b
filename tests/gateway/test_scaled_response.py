"""What the client gets, and what is counted, when a scaled request's algorithm fails with
an error it does not expect (a bug of ours, an answer read wrong): the response alone, with
a stand-in for the scaler (its algorithm and its accounting), driven as ASGI. (Scaled
requests end to end: test_scaled.py.)"""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import MutableMapping
from typing import Any

import pytest

from modelserve.gateway.scaled import CallMeter, ScaledResponse


class FailingScaler:
    """An algorithm that makes one upstream call, then fails with a KeyError."""

    _keepalive = 0.05

    def __init__(self) -> None:
        self.accounted: list[tuple[Any, int, int]] = []

    async def run(self, exchange: Any) -> Any:
        exchange.meter.count({"usage": {"prompt_tokens": 11, "completion_tokens": 7}})
        raise KeyError("logprob")

    def account(self, exchange: Any, result: Any, status: int) -> None:
        self.accounted.append((result, status, exchange.meter.used.completion_tokens))


def exchange(stream: bool) -> Any:
    return types.SimpleNamespace(
        payload={"stream": stream},
        target=types.SimpleNamespace(served_name="smol"),
        scaling=types.SimpleNamespace(trace=False),
        meter=CallMeter(),
    )


@pytest.mark.parametrize("stream", [False, True])
def test_an_unexpected_failure_is_a_502_and_its_calls_still_count(
    stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    scaler = FailingScaler()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)  # the client stays
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    response = ScaledResponse(scaler, exchange(stream))  # type: ignore[arg-type]
    asyncio.run(response({"type": "http"}, receive, send))

    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if stream:
        assert body.startswith(b"data: ")
        error = json.loads(body.removeprefix(b"data: "))["error"]
    else:
        assert sent[0]["status"] == 502
        error = json.loads(body)["error"]
    assert error["code"] == "scaling_failed"
    assert "KeyError" in error["message"] and "logprob" not in error["message"]
    # The call that answered before the failure is counted, as for any other outcome.
    assert scaler.accounted == [(None, 502, 7)]
    assert "scaling for smol failed" in caplog.text and "KeyError" in caplog.text
