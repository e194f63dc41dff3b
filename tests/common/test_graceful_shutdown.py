"""SIGTERM to a gateway with a stream in flight: it stops accepting connections, the
stream ends whole (its last chunk and `[DONE]`), and the process exits by itself within
its grace (`GATEWAY_SHUTDOWN_GRACE_SECONDS`); a stream longer than the grace is cut."""

from __future__ import annotations

import contextlib
import json
import os
import signal

import httpx

from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import port_open
from modelserve.testbed.recording_upstream import answer_text
from modelserve.testbed.request_path import RequestPath, chat_body, wait_routed

# Chunks of a stream that outlasts a 1 s grace by far (0.15 s each).
LONG = 400


def streamed_text(lines: list[str]) -> str:
    """The content the `data:` chunks of a chat completion stream spell."""
    text = ""
    for line in lines:
        if line.startswith("data: {"):
            for choice in json.loads(line.removeprefix("data: "))["choices"]:
                text += choice.get("delta", {}).get("content") or ""
    return text


def terminate(gateway: RunningService) -> None:
    pid = gateway.process.pid
    assert pid is not None
    os.killpg(pid, signal.SIGTERM)


def exited(gateway: RunningService, within: float) -> list[str]:
    """Once the gateway exited by itself (nothing else signals it): the messages of its
    log. uvicorn raises SIGTERM again once it has shut down, so that its exit status says
    what ended it: -SIGTERM, not a crash's 1 nor SIGKILL's."""
    wait_for(
        lambda: gateway.process.returncode is not None, timeout=within, what="the gateway to exit"
    )
    assert gateway.process.returncode == -signal.SIGTERM
    lines = gateway.process.log_path.read_text().splitlines()
    return [json.loads(line)["message"] for line in lines if line.startswith("{")]


def test_a_stream_in_flight_completes_after_sigterm(request_path: RequestPath) -> None:
    gateway = request_path.start_gateway(GATEWAY_SHUTDOWN_GRACE_SECONDS="30")
    wait_routed(request_path, gateway)
    port = int(gateway.url.rsplit(":", 1)[1])
    lines: list[str] = []
    body = chat_body(request_path, stream=True)
    headers = request_path.user_headers()
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as answer:
        assert answer.status_code == 200
        stream = answer.iter_lines()
        # The first chunk is through: the stream is under way (19 more to come, 0.15 s
        # apart) when the gateway is told to stop.
        while not lines or not lines[-1].startswith("data: {"):
            lines.append(next(stream))
        terminate(gateway)
        # It stops accepting connections at once, the stream still going.
        wait_for(lambda: not port_open(port), timeout=10, what="the gateway to stop listening")
        lines.extend(stream)
    assert [line for line in lines if line.startswith("data: ")][-1] == "data: [DONE]"
    assert streamed_text(lines) == answer_text(20)
    # Nothing in flight any more: it exits by itself, within its grace, having closed
    # what it opened, and without cutting anything.
    messages = exited(gateway, within=30)
    assert "Application shutdown complete." in messages
    assert not [line for line in messages if "timeout graceful shutdown exceeded" in line]


def test_a_stream_longer_than_the_grace_is_cut_and_the_gateway_exits(
    request_path: RequestPath,
) -> None:
    gateway = request_path.start_gateway(GATEWAY_SHUTDOWN_GRACE_SECONDS="1")
    wait_routed(request_path, gateway)
    lines: list[str] = []
    body = chat_body(request_path, stream=True, tokens=LONG)
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json=body,
        headers=request_path.user_headers(),
        timeout=30,
    ) as answer:
        assert answer.status_code == 200
        stream = answer.iter_lines()
        while not lines or not lines[-1].startswith("data: {"):
            lines.append(next(stream))
        terminate(gateway)
        # The gateway exits long before the stream (60 s in all) could end: its grace is 1 s.
        messages = exited(gateway, within=20)
        # The connection is cut mid-stream: what came before is all there is.
        with contextlib.suppress(httpx.HTTPError):
            lines.extend(stream)
    assert "data: [DONE]" not in lines
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in messages
    assert "Application shutdown complete." in messages
    assert len(streamed_text(lines)) < len(answer_text(LONG))
