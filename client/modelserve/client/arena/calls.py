"""The arena's routes as `Call`s (method, path, query, body and the parser of the answer),
pure like `modelserve.client.calls`: the sync and async clients only send them. A
battle's or a turn's call with `stream` true is read as events (`events.EventReader`),
not by its parser."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelserve.client.arena.answers import (
    ArenaBattle,
    ArenaBattles,
    ArenaTurn,
    ArenaVote,
    ArenaVotes,
    Leaderboard,
)
from modelserve.client.calls import Call, path_segment, query_of

BATTLES = "/arena/battles"


def _given(**fields: Any) -> dict[str, Any]:
    """The fields a caller gave: the others are left to the platform's defaults."""
    return {key: value for key, value in fields.items() if value is not None}


def _flag(value: bool | None) -> str | None:
    return None if value is None else str(value).lower()


def battle(
    messages: Sequence[Mapping[str, Any]],
    *,
    models: Sequence[str] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    stream: bool = True,
) -> Call[ArenaTurn]:
    """POST /arena/battles: `models` names both sides (a first); without, the gateway
    draws two the caller may use and keeps them hidden until the vote."""
    body = {
        "messages": [dict(message) for message in messages],
        **_given(
            models=None if models is None else list(models),
            max_tokens=max_tokens,
            temperature=temperature,
        ),
        "stream": stream,
    }
    return Call("POST", BATTLES, ArenaTurn.model_validate, body=body)


def battle_turn(
    battle_id: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    stream: bool = True,
) -> Call[ArenaTurn]:
    """POST /arena/battles/{id}/turns: the same two models answer the new messages."""
    body = {
        "messages": [dict(message) for message in messages],
        **_given(max_tokens=max_tokens, temperature=temperature),
        "stream": stream,
    }
    path = f"{BATTLES}/{path_segment(battle_id)}/turns"
    return Call("POST", path, ArenaTurn.model_validate, body=body)


def vote(battle_id: str, vote: str) -> Call[ArenaVote]:
    """POST /arena/battles/{id}/vote: `vote` is a, b, tie or both_bad."""
    path = f"{BATTLES}/{path_segment(battle_id)}/vote"
    return Call("POST", path, ArenaVote.model_validate, body={"vote": vote})


def get_battle(battle_id: str) -> Call[ArenaBattle]:
    return Call("GET", f"{BATTLES}/{path_segment(battle_id)}", ArenaBattle.model_validate)


def list_battles(*, limit: int | None = None, after: str | None = None) -> Call[ArenaBattles]:
    return Call("GET", BATTLES, ArenaBattles.model_validate, query_of(limit=limit, after=after))


def list_votes(
    *,
    counts: bool | None = None,
    voter: str | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> Call[ArenaVotes]:
    query = query_of(counts=_flag(counts), voter=voter, limit=limit, after=after)
    return Call("GET", "/arena/votes", ArenaVotes.model_validate, query)


def leaderboard(
    *, team: str | None = None, style_control: bool = False, bootstrap: int | None = None
) -> Call[Leaderboard]:
    query = query_of(team=team, style_control=_flag(style_control or None), bootstrap=bootstrap)
    return Call("GET", "/arena/leaderboard", Leaderboard.model_validate, query)
