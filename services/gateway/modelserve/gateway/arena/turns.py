"""One turn of a battle, answered: both sides' responses run at once (`lanes`), their
answers passed on side by side, and the turn kept (or the battle voided) once it ends.

Streamed, it is one server-sent event stream with two lanes, each event a JSON object
with a `type` (docs/arena.md):

    {"type": "battle", "id": "battle-…", "turn": 1}
    {"type": "loading", "side": "b"}                  the model of side b is being woken
    {"type": "delta", "side": "a", "content": "Hel"}
    {"type": "done", "side": "a", "finish_reason": "stop"}
    {"type": "turn", "id": "battle-…", "turn": 1, "vote": "/arena/battles/…/vote"}
    {"type": "void", "id": "battle-…", "side": "b", "code": "…", "message": "…"}
    [DONE]

A side that fails voids the battle (the other side is stopped); a caller who leaves
stops both, and the turn is forgotten (a battle left before its first answers is void).
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
    responses: dict[str, ExchangeResponse]  # per side, prepared (the contract's word had)
    conversations: dict[str, list[Message]]  # per side, with this turn's new messages
    stream: bool


@dataclasses.dataclass
class Outcome:
    kind: str  # answered, void, abandoned; unkept: answered, but not kept
    side: str | None = None  # the side that failed
    code: str | None = None
    status: int | None = None

    def message(self) -> str:
        if self.kind == "abandoned":
            return "the caller left before the answers were complete"
        return (
            f"the answer of side {self.side} failed ({self.code}, {self.status}): the battle "
            "is void and takes no vote"
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

    def abandon(self) -> None:
        for response in self._turn.responses.values():
            response.abandon()

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
            outcome = await self._answers(send, events, gone)
        finally:
            stop.set()
            gone.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            kept = await self._keep(outcome, lanes)
        if not kept:
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
                return Outcome("void", event.side, event.code, event.status)
            if event.kind is Kind.DONE:
                done.add(event.side)
                body = {"type": "done", "side": event.side, "finish_reason": event.finish_reason}
            elif event.kind is Kind.DELTA:
                body = {"type": "delta", "side": event.side, "content": event.content}
            elif event.kind is Kind.LOADING and event.side not in loading:
                loading.add(event.side)
                body = {"type": "loading", "side": event.side}
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
        """The turn's outcome into the battle: answers kept, the battle void, or the
        turn forgotten; False when the database would not have it (the battle's lease
        frees it in the end)."""
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
                await self._store.finish_turn(turn.battle_id, kept["a"], kept["b"])
            elif outcome.kind == "void" or turn.number == 1:
                await self._store.void(turn.battle_id, outcome.message())
            else:
                await self._store.release(turn.battle_id)
        except ApiError as error:
            logger.warning(
                "arena: keeping turn %d of %s failed: %s", turn.number, turn.battle_id, error
            )
            return False
        return True

    async def _close(self, send: Send, outcome: Outcome, lanes: dict[str, Lane]) -> None:
        turn = self._turn
        if outcome.kind == "abandoned":
            return  # nobody to tell
        if outcome.kind == "unkept":
            error = {
                "code": "database_unavailable",
                "message": "the answers could not be kept, so this turn takes no vote: "
                "try the turn again",
            }
            if not turn.stream:
                await send_json(send, 503, {"error": error}, {"Retry-After": "1"})
                return
            await self._send(send, {"type": "error", "id": turn.battle_id, **error})
        if outcome.kind == "void":
            void: dict[str, Any] = {
                "id": turn.battle_id,
                "side": outcome.side,
                "code": outcome.code,
                "message": outcome.message(),
            }
            if turn.stream:
                await self._send(send, {"type": "void", **void})
            else:
                await send_json(send, 502, {"error": {"code": "battle_void", **void}})
                return
        elif turn.stream:
            summary = {"type": "turn", "id": turn.battle_id, "turn": turn.number}
            await self._send(send, {**summary, "vote": vote_path(turn.battle_id)})
        else:
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
            return
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
