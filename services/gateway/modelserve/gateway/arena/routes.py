"""The arena's routes (docs/arena.md): battles, their turns and votes, the leaderboards."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from modelserve.common.errors import ApiError
from modelserve.gateway.arena.battles import Arena, battle_view, vote_view
from modelserve.gateway.arena.requests import BattleRequest, TurnRequest, VoteRequest
from modelserve.gateway.auth import Caller

router = APIRouter(prefix="/arena", tags=["arena"])
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Both answers: an event stream with two lanes (`stream`: true, the "
        "default), or one JSON object",
        "content": {"text/event-stream": {}, "application/json": {}},
    }
}


async def _arena(request: Request) -> Arena:
    arena: Arena = request.app.state.arena
    return arena


ArenaDep = Annotated[Arena, Depends(_arena)]
Limit = Annotated[int, Query(ge=1, le=100, description="Items per page")]


@router.post("/battles", responses=_STREAM)
async def start_battle(
    body: BattleRequest, request: Request, claims: Caller, arena: ArenaDep
) -> Response:
    """Two models answer the conversation side by side, their identities hidden: the two
    named in `models`, or two drawn at random among those the caller may use."""
    return await arena.start(claims, body, request.headers)


@router.post("/battles/{battle_id}/turns", responses=_STREAM)
async def next_turn(
    battle_id: str, body: TurnRequest, request: Request, claims: Caller, arena: ArenaDep
) -> Response:
    """The next turn of an open battle: the same two models answer the new messages."""
    return await arena.next_turn(claims, battle_id, body, request.headers)


@router.post("/battles/{battle_id}/vote", status_code=201)
async def vote(
    battle_id: str, body: VoteRequest, claims: Caller, arena: ArenaDep
) -> dict[str, Any]:
    """The caller's one vote on their battle; the answer reveals both models."""
    return await arena.vote(claims, battle_id, body.vote)


@router.get("/battles/{battle_id}")
async def get_battle(battle_id: str, claims: Caller, arena: ArenaDep) -> dict[str, Any]:
    """One of the caller's battles: both conversations, the models once voted on."""
    return await arena.battle(claims, battle_id)


@router.get("/battles")
async def list_battles(
    claims: Caller,
    arena: ArenaDep,
    limit: Limit = 20,
    after: Annotated[str | None, Query(description="The last id of the previous page")] = None,
) -> dict[str, Any]:
    """The caller's battles, newest first."""
    found = await arena.store.battles(claims.sub, limit + 1, after)
    return _page([battle_view(battle) for battle in found[:limit]], len(found) > limit)


@router.get("/votes")
async def list_votes(
    claims: Caller,
    arena: ArenaDep,
    counts: Annotated[
        bool | None, Query(description="Only votes that count (true), or excluded ones")
    ] = None,
    voter: Annotated[str | None, Query(description="Admins: one user's votes")] = None,
    limit: Limit = 20,
    after: Annotated[str | None, Query(description="The last battle_id of the page")] = None,
) -> dict[str, Any]:
    """Votes, newest first, with whether each counts and why not: the caller's own;
    everyone's (or `voter`'s) for admins."""
    if voter is not None and voter != claims.sub and not claims.is_admin:
        raise ApiError(403, "forbidden", "only admins see other users' votes")
    if voter is None and not claims.is_admin:
        voter = claims.sub
    found = await arena.store.votes(voter, counts, limit + 1, after)
    data = [vote_view(record) for record in found[:limit]]
    return _page(data, len(found) > limit, key="battle_id")


@router.get("/leaderboard")
async def leaderboard(
    claims: Caller,
    arena: ArenaDep,
    team: Annotated[str | None, Query(description="A team's board; the global one without")] = None,
    style_control: Annotated[
        bool, Query(description="Ratings with answer length and markdown as covariates")
    ] = False,
    bootstrap: Annotated[
        int | None, Query(ge=0, le=1000, description="Resamples for the 95% intervals")
    ] = None,
) -> dict[str, Any]:
    """Bradley-Terry ratings with bootstrap 95% intervals, votes, win rates and ranks,
    with the online Elo beside them, from the votes that count."""
    return await arena.leaderboard(claims, team, style_control=style_control, rounds=bootstrap)


def _page(data: list[dict[str, Any]], more: bool, *, key: str = "id") -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "has_more": more,
        "last_id": data[-1][key] if data else None,
    }
