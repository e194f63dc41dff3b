"""One turn of a battle, answered: both sides' responses run at once (`lanes`), their
answers passed on side by side, and the turn kept (or the battle voided) once it ends.

Streamed, it is one server-sent event stream with two lanes, each event a JSON object
with a `type` (docs/arena.md):

    {"type": "battle", "id": "battle-…", "turn": 1}
    {"type": "loading"}                               a model of the battle is being woken
    {"type": "delta", "side": "a", "content": "Hel"}
    {"type": "done", "side": "a", "finish_reason": "stop"}
    {"type": "turn", "id": "battle-…", "turn": 1, "vote": "/arena/battles/…/vote"}
    {"type": "void", "id": "battle-…", "side": "b", "code": "…", "message": "…"}
    {"type": "error", "id": "battle-…", "side": "b", "code": "…", "message": "…"}
    [DONE]

A side that fails (or a turn that outlives its lease) voids the battle, the other side
stopped. A side that refuses the turn's request (a 4xx: the conversation too long for its
model, say) makes the turn forgotten (`error`), or, on the first turn, the battle void. A
caller who leaves stops both, and the turn is forgotten (a battle left before its first
answers is void). Only the turn that holds the battle's lease changes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any

from starlette.types import Receive, Scope, Send

from modelserve.common.errors import ApiError
from modelserve.gateway.arena.lanes import Kind, Lane, LaneEvent
from modelserve.gateway.arena.store import ArenaStore, Message
from modelserve.gateway.asgi import ExchangeResponse, client_gone, send_json
from modelserve.gateway.metrics import GatewayMetrics

logger = logging.getLogger(__name__)
SIDES = ("a", "b")
_STREAM_HEAD = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


@dataclasses.dataclass
class Turn:
    battle_id: str
    number: int  # 1 for the battle's first
    claim: str  # the lease of the battle this turn holds
    responses: dict[str, ExchangeResponse]  # per side, prepared (the contract's word had)
    conversations: dict[str, list[Message]]  # per side, with this turn's new messages
    stream: bool
    seconds: float  # how long it may take (its lease): past it, the battle is void


@dataclasses.dataclass
class Outcome:
    # answered; void (a side failed); refused (a side refused the turn's request: a 4xx);
    # timeout; abandoned (the caller left); unkept (answered, but not kept)
    kind: str
    side: str | None = None  # the side that failed
    code: str | None = None
    status: int | None = None

    def voids(self, number: int) -> bool:
        """Whether the battle is void after this outcome of turn `number`: a side failed,
        or none of the battle's answers could be had."""
        if self.kind in ("void", "timeout"):
            return True
        return number == 1 and self.kind in ("refused", "abandoned")

    def message(self, seconds: float) -> str:
        if self.kind == "abandoned":
            return "the caller left before the answers were complete"
        if self.kind == "timeout":
            return f"the answers took longer than {seconds:.0f} s: the battle is void"
        failed = f"side {self.side} failed ({self.code}, {self.status})"
        if self.kind == "refused":
            failed = f"side {self.side} refused the turn ({self.code}, {self.status})"
        return f"{failed}: the battle is void and takes no vote"

    def refusal(self) -> str:
        return (
            f"side {self.side} refused this turn ({self.code}, {self.status}): the turn is "
            "forgotten, the battle is as it was before it"
        )


def vote_path(battle_id: str) -> str:
    return f"/arena/battles/{battle_id}/vote"


def _event(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class TurnResponse(ExchangeResponse):
    """Runs a turn's two sides as the ASGI response of the request that asked for it."""

    def __init__(self, store: ArenaStore, metrics: GatewayMetrics, turn: Turn) -> None:
        super().__init__()
        self._store = store
        self._metrics = metrics
        self._turn = turn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        turn = self._turn
        events: asyncio.Queue[LaneEvent] = asyncio.Queue()
        stop = asyncio.Event()
        lanes = {side: Lane(side, turn.responses[side], events, stop) for side in SIDES}
        tasks = [
            asyncio.create_task(lane.run(), name=f"arena-{side}") for side, lane in lanes.items()
        ]
        gone = asyncio.create_task(client_gone(receive), name="arena-client")
        gone.add_done_callback(lambda _: stop.set())
        outcome = Outcome("abandoned")
        try:
            if turn.stream:
                await send({"type": "http.response.start", "status": 200, "headers": _STREAM_HEAD})
                await self._send(
                    send, {"type": "battle", "id": turn.battle_id, "turn": turn.number}
                )
            try:
                async with asyncio.timeout(turn.seconds):
                    outcome = await self._answers(send, events, gone)
            except TimeoutError:
                outcome = Outcome("timeout", code="turn_timeout", status=504)
        finally:
            stop.set()
            gone.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            kept = await self._keep(outcome, lanes)
        if not kept and outcome.kind == "answered":
            outcome = Outcome("unkept")
        await self._close(send, outcome, lanes)

    async def _answers(
        self, send: Send, events: asyncio.Queue[LaneEvent], gone: asyncio.Task[None]
    ) -> Outcome:
        """Both sides' events as they come, until both are done or one fails."""
        done: set[str] = set()
        loading: set[str] = set()
        while len(done) < len(SIDES):
            event = await events.get()
            if event.kind is Kind.FAILED:
                if gone.done():
                    return Outcome("abandoned")
                status = event.status or 502
                kind = "refused" if 400 <= status < 500 else "void"
                return Outcome(kind, event.side, event.code, status)
            if event.kind is Kind.DONE:
                done.add(event.side)
                body = {"type": "done", "side": event.side, "finish_reason": event.finish_reason}
            elif event.kind is Kind.DELTA:
                body = {"type": "delta", "side": event.side, "content": event.content}
            elif event.kind is Kind.LOADING and not loading:
                # Once, and without the side: which side's model sleeps (GET /v1/models
                # says which models do) would tell the model before the vote.
                loading.add(event.side)
                body = {"type": "loading"}
            else:  # a keep-alive of a side: one of ours, so the stream stays open
                if self._turn.stream:
                    await send(
                        {"type": "http.response.body", "body": b": waiting\n\n", "more_body": True}
                    )
                continue
            await self._send(send, body)
        return Outcome("answered")

    async def _send(self, send: Send, body: dict[str, Any]) -> None:
        if self._turn.stream:
            await send({"type": "http.response.body", "body": _event(body), "more_body": True})

    async def _keep(self, outcome: Outcome, lanes: dict[str, Lane]) -> bool:
        """The turn's outcome into the battle (only while the turn holds it): answers
        kept, the battle void, or the turn forgotten; False when the database would not
        have it (then the battle's lease frees it in the end)."""
        turn = self._turn
        self._metrics.arena_turns.labels(outcome.kind).inc()
        try:
            if outcome.kind == "answered":
                kept = {
                    side: [
                        *turn.conversations[side],
                        {"role": "assistant", "content": lanes[side].text},
                    ]
                    for side in SIDES
                }
                await self._store.finish_turn(turn.battle_id, turn.claim, kept["a"], kept["b"])
            elif outcome.voids(turn.number):
                await self._store.void(turn.battle_id, turn.claim, outcome.message(turn.seconds))
            else:
                await self._store.release(turn.battle_id, turn.claim)
        except ApiError as error:
            logger.warning(
                "arena: keeping turn %d of %s failed: %s", turn.number, turn.battle_id, error
            )
            return False
        return True

    async def _close(self, send: Send, outcome: Outcome, lanes: dict[str, Lane]) -> None:
        """What the caller is told at the end of the turn."""
        turn = self._turn
        if outcome.kind == "abandoned":
            return  # nobody to tell
        if outcome.kind == "answered":
            await self._answered(send, lanes)
            return
        error: dict[str, Any] = {"id": turn.battle_id, "side": outcome.side}
        status = 502
        if outcome.kind == "unkept":
            kind, status = "error", 503
            error |= {
                "code": "database_unavailable",
                "message": "the answers could not be kept, so this turn takes no vote: "
                "send the turn again",
            }
        elif outcome.voids(turn.number):
            kind = "void"
            error |= {"code": outcome.code, "message": outcome.message(turn.seconds)}
            status = outcome.status if outcome.kind == "refused" and outcome.status else 502
        else:
            kind, status = "error", outcome.status or 400
            error |= {"code": outcome.code, "message": outcome.refusal()}
        if turn.stream:
            await self._send(send, {"type": kind, **error})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            return
        if kind == "void":
            error = {**error, "code": "battle_void", "reason": outcome.code}
        headers = {"Retry-After": "1"} if status == 503 else None
        await send_json(send, status, {"error": error}, headers)

    async def _answered(self, send: Send, lanes: dict[str, Lane]) -> None:
        turn = self._turn
        if turn.stream:
            summary = {"type": "turn", "id": turn.battle_id, "turn": turn.number}
            await self._send(send, {**summary, "vote": vote_path(turn.battle_id)})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            return
        answers = {
            side: {"content": lane.text, "finish_reason": lane.finish_reason or "stop"}
            for side, lane in lanes.items()
        }
        body = {
            "id": turn.battle_id,
            "object": "arena.turn",
            "turn": turn.number,
            "created": int(time.time()),
            "answers": answers,
            "vote": vote_path(turn.battle_id),
        }
        await send_json(send, 200, body)
