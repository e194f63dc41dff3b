"""Typed answers of the arena's routes. As in `modelserve.client.answers`, each names the
fields scripts rely on and lets every other field through."""

from __future__ import annotations

import datetime as dt
from typing import Any

from modelserve.client.answers import Answer

SIDES = ("a", "b")
VOTES = ("a", "b", "tie", "both_bad")


class Sides(Answer):
    """The two models of a battle, side a and side b."""

    a: str
    b: str


class Reveal(Answer):
    """A word of a side's answers that named one of the battle's models."""

    side: str
    term: str


class ArenaVote(Answer):
    """POST /arena/battles/{id}/vote, and each of GET /arena/votes: the vote, both models
    revealed, and whether it counts (else `excluded_because`: `models_chosen` or
    `identity_revealed`)."""

    battle_id: str
    vote: str  # a, b, tie, both_bad
    models: Sides
    counts: bool
    excluded_because: str | None = None
    revealed: list[Reveal] = []
    voter: str
    scope: str  # global, team, private (no board)
    team: str | None = None
    voted_at: dt.datetime


class Conversations(Answer):
    """Each side's conversation: the messages sent, the side's answers after them."""

    a: list[dict[str, Any]] = []
    b: list[dict[str, Any]] = []


class ArenaBattle(Answer):
    """GET /arena/battles/{id}, and each of GET /arena/battles: the models once voted on
    (`None` before), `vote` the path to vote at while the battle is open."""

    id: str
    status: str  # open, voted, void
    busy: bool
    turns: int
    anonymous: bool
    # The board it feeds (global, team, private); for a drawn pair, None until the vote.
    scope: str | None = None
    team: str | None = None
    models: Sides | None = None
    conversations: Conversations
    void_reason: str | None = None
    vote: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class ArenaBattles(Answer):
    """GET /arena/battles: one page, newest first; the next one is `after=last_id`."""

    data: list[ArenaBattle]
    has_more: bool
    last_id: str | None = None


class ArenaVotes(Answer):
    """GET /arena/votes: one page, newest first; the next one is `after=last_id`."""

    data: list[ArenaVote]
    has_more: bool
    last_id: str | None = None


class Interval(Answer):
    """A rating's 95% bootstrap interval (both the rating itself without resamples)."""

    lower: float
    upper: float


class Standing(Answer):
    """A model's row of a leaderboard."""

    rank: int
    model: str
    rating: float  # Bradley-Terry, on the Elo scale
    ci: Interval
    votes: int
    wins: int
    losses: int
    ties: int
    win_rate: float
    elo: float  # the online Elo, for comparison


class Leaderboard(Answer):
    """GET /arena/leaderboard: the counted votes' standings, sorted by rating, and the
    uncounted votes by reason (`excluded`)."""

    scope: str  # global, team
    team: str | None = None
    votes: int
    excluded: dict[str, int] = {}
    bootstrap_rounds: int
    style_control: bool
    style_coefficients: dict[str, float] | None = None
    models: list[Standing]


class SideAnswer(Answer):
    content: str
    finish_reason: str | None = None


class TurnAnswers(Answer):
    a: SideAnswer
    b: SideAnswer


class ArenaTurn(Answer):
    """A turn's two answers, whole: POST /arena/battles (or …/turns) with `stream` false,
    or a streamed turn's events put together (`created` is then `None`)."""

    id: str
    turn: int
    created: int | None = None
    answers: TurnAnswers
    vote: str  # the path to vote at


class BattleEvent(Answer):
    """One event of a battle's stream; `type` says which fields it has:

    - `battle`: `id`, `turn`: the stream's first;
    - `loading`: a model of the battle is being woken (which side is not said);
    - `delta`: `side`, `content`: a piece of that side's answer;
    - `done`: `side`, `finish_reason`: that side's answer is whole;
    - `turn`: `id`, `turn`, `vote`: both answers are kept; vote, or go on;
    - `void`: `id`, `side`, `code`, `message`: a side failed, the battle is void;
    - `error`: `id`, `side`, `code`, `message`: the turn was refused or not kept; send it
      again.
    """

    type: str
    id: str | None = None
    turn: int | None = None
    side: str | None = None
    content: str | None = None
    finish_reason: str | None = None
    vote: str | None = None
    code: str | None = None
    message: str | None = None
