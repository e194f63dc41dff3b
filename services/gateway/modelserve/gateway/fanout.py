"""One request per prompt of a completion request's list, a few at a time, to one server.

Each part goes through the dispatcher (counted in flight on its endpoint, retried on a
refused connection) and is read whole. The first part that fails (an answer other than
200, or no answer) ends the request: the parts still running are cancelled (their
connections closed, so the server stops generating for nobody) and that failure is the
answer, as the proxy gives any failure of a model server; the prompts answered before
it are still paid for (`FanOut.answers`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from modelserve.common.request_ids import model_server_request_id
from modelserve.gateway.dispatch import Dispatcher, NoReadyEndpoint
from modelserve.gateway.routing import Target
from modelserve.gateway.upstream import BrokenStream, UpstreamError


@dataclasses.dataclass(frozen=True)
class Whole:
    """A whole answer: a part's, or the merged one."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _PartFailed(Exception):
    def __init__(self, answer: Whole) -> None:
        super().__init__(answer.status)
        self.answer = answer


async def _part(
    dispatcher: Dispatcher,
    target: Target,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    running: bool,
) -> Whole:
    async with dispatcher.exchange(target, path, body, headers, running=running) as answer:
        try:
            data = await answer.read()
        except BaseException:
            answer.abort()
            raise
        answer.release()
        return Whole(answer.status, answer.headers, data)


@dataclasses.dataclass
class FanOut:
    """What became of the parts: `failed`, the first part that did not answer 200 (None
    when all did), and the decoded answers of those that did, by position (all of them
    unless one failed: the usage of those is still owed)."""

    first: Whole | None = None  # the first prompt's answer (its head for the merged one)
    failed: Whole | None = None
    # A part that had no answer (unreachable, timed out, broken off, no endpoint).
    error: UpstreamError | NoReadyEndpoint | None = None
    answers: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def in_order(self) -> list[dict[str, Any]]:
        return [self.answers[position] for position in sorted(self.answers)]


def _decoded(answer: Whole) -> dict[str, Any]:
    try:
        found = json.loads(answer.body)
    except ValueError as error:
        raise BrokenStream("the model server answered a prompt with no JSON") from error
    if not isinstance(found, dict):
        raise BrokenStream("the model server answered a prompt with no JSON object")
    return found


def part_headers(headers: Mapping[str, str], position: int) -> Mapping[str, str]:
    """The headers of one part: its own request id, the UUID 5 of `<id>/<position>`. vLLM
    takes `X-Request-ID` as its engine's request id, which must be unique among the
    requests it runs, and the parts run at once."""
    sent = headers.get("x-request-id")
    if sent is None:
        return headers
    return {**headers, "x-request-id": model_server_request_id(f"{sent}/{position}")}


async def fan_out(
    dispatcher: Dispatcher,
    target: Target,
    path: str,
    bodies: list[bytes],
    headers: Mapping[str, str],
    *,
    concurrency: int,
) -> FanOut:
    """Send every body, at most `concurrency` at once, until one fails (what the
    dispatcher raises, NoReadyEndpoint or an UpstreamError, and BrokenStream for a 200
    that is no JSON object, go in `error`)."""
    gate = asyncio.Semaphore(concurrency)
    result = FanOut()

    async def one(position: int, body: bytes) -> None:
        async with gate:
            # Past the first, the request is already counted running on the server: its
            # later parts go on through a drain, as a scaled request's later calls do.
            found = await _part(
                dispatcher, target, path, body, part_headers(headers, position), position > 0
            )
        if position == 0:
            result.first = found
        if found.status != 200:
            raise _PartFailed(found)
        result.answers[position] = _decoded(found)

    tasks = [asyncio.ensure_future(one(position, body)) for position, body in enumerate(bodies)]
    try:
        await asyncio.gather(*tasks)
    except _PartFailed as failed:
        result.failed = failed.answer
    except (UpstreamError, NoReadyEndpoint) as error:
        result.error = error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result
