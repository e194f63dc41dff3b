"""A battle's event stream, read: server-sent events, each a JSON `BattleEvent`, ending
with `[DONE]` (docs/arena.md), and a streamed turn's events put together as the
`ArenaTurn` that `stream` false answers. Pure: the clients feed it the lines they read."""

from __future__ import annotations

import json

from pydantic import ValidationError

from modelserve.client.arena.answers import SIDES, ArenaTurn, BattleEvent
from modelserve.client.errors import ModelServeError

DONE = "[DONE]"


class EventReader:
    """Server-sent event lines in, `BattleEvent`s out: `feed` each line (without its line
    break) and get the event it ends, if any. `done` once `[DONE]` came; comments
    (`: waiting`) and fields other than `data` are skipped."""

    def __init__(self) -> None:
        self.done = False
        self._data: list[str] = []

    def feed(self, line: str) -> BattleEvent | None:
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
            return None
        if line or not self._data:
            return None  # a comment, another field, or a blank line after nothing
        data, self._data = "\n".join(self._data), []
        if data == DONE:
            self.done = True
            return None
        try:
            return BattleEvent.model_validate(json.loads(data))
        except (ValueError, ValidationError) as error:
            raise ModelServeError("unexpected_answer", f"a battle event: {error}") from error


def unfinished() -> ModelServeError:
    return ModelServeError("unexpected_answer", "the battle's stream ended before [DONE]")


class TurnCollector:
    """A streamed turn's events, `add`ed as they come, put together: `turn()` is the
    `ArenaTurn` once the `turn` event came. A `void` or `error` event raises
    ModelServeError (`battle_void`, with `id`, `side` and the side's `code` in `details`;
    or the event's own code, e.g. `database_unavailable`)."""

    def __init__(self) -> None:
        self.battle_id: str | None = None
        self.texts: dict[str, list[str]] = {side: [] for side in SIDES}
        self.finish_reasons: dict[str, str | None] = {side: None for side in SIDES}
        self._summary: BattleEvent | None = None

    def add(self, event: BattleEvent) -> None:
        if event.type in ("battle", "turn", "void", "error") and event.id is not None:
            self.battle_id = event.id
        if event.type == "delta" and event.side in self.texts:
            self.texts[event.side].append(event.content or "")
        elif event.type == "done" and event.side in self.finish_reasons:
            self.finish_reasons[event.side] = event.finish_reason
        elif event.type == "turn":
            self._summary = event
        elif event.type == "void":
            details = {"id": event.id, "side": event.side, "code": event.code}
            raise ModelServeError(
                "battle_void", event.message or "the battle is void", None, details
            )
        elif event.type == "error":
            details = {"id": event.id}
            raise ModelServeError(event.code or "error", event.message or "", None, details)

    def turn(self) -> ArenaTurn:
        summary = self._summary
        if summary is None or summary.id is None or summary.turn is None:
            raise unfinished()
        answers = {
            side: {"content": "".join(self.texts[side]), "finish_reason": self.finish_reasons[side]}
            for side in SIDES
        }
        return ArenaTurn.model_validate(
            {"id": summary.id, "turn": summary.turn, "answers": answers, "vote": summary.vote}
        )
