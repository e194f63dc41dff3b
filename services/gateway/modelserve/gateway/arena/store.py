"""Battles and votes in the gateway's database (tables made by migration 0004).

A battle is claimed for a turn with a lease (`busy_until`): one turn at a time, and a
replica that dies mid-turn frees the battle when the lease runs out. A vote is written
in the transaction that closes the battle, with both conversations as they were, so a
battle has at most one vote and no turn after it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from modelserve.common.database import run_for_clients

T = TypeVar("T")
Message = dict[str, Any]
Conn = psycopg.AsyncConnection[Any]


class Status(StrEnum):
    OPEN = "open"  # answered (or answering a turn): may take a turn or a vote
    VOTED = "voted"
    VOID = "void"  # a model failed, or the caller left before the first answers


class Scope(StrEnum):
    """Which leaderboard a battle's vote feeds."""

    GLOBAL = "global"  # both models are the platform's: the global board, voters' teams'
    TEAM = "team"  # a team's model against it or the platform's: that team's board
    PRIVATE = "private"  # a model of one user's own: no board


@dataclasses.dataclass(frozen=True)
class Battle:
    id: str
    owner: str
    teams: list[str]
    scope: Scope
    team: str | None
    model_a: str
    model_b: str
    server_a: str  # the server (ModelServe uid) of each side, for every turn
    server_b: str
    anonymous: bool  # the pair was drawn at random, not named by the caller
    conversation_a: list[Message]
    conversation_b: list[Message]
    turns: int
    status: Status
    void_reason: str | None
    busy: bool  # a turn is being answered
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> Battle:
        return cls(
            id=row["id"],
            owner=row["owner"],
            teams=list(row["teams"]),
            scope=Scope(row["scope"]),
            team=row["team"],
            model_a=row["model_a"],
            model_b=row["model_b"],
            server_a=row["server_a"],
            server_b=row["server_b"],
            anonymous=row["anonymous"],
            conversation_a=list(row["conversation_a"]),
            conversation_b=list(row["conversation_b"]),
            turns=row["turns"],
            status=Status(row["status"]),
            void_reason=row["void_reason"],
            busy=bool(row["busy"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclasses.dataclass(frozen=True)
class VoteRecord:
    battle_id: str
    vote: str
    voter: str
    teams: list[str]
    scope: Scope
    team: str | None
    model_a: str
    model_b: str
    counts: bool
    excluded_because: str | None
    revealed: list[dict[str, str]]  # what named a model: [{"side", "term"}]
    style_a: dict[str, int]
    style_b: dict[str, int]
    voted_at: dt.datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> VoteRecord:
        return cls(
            battle_id=row["battle_id"],
            vote=row["vote"],
            voter=row["voter"],
            teams=list(row["teams"]),
            scope=Scope(row["scope"]),
            team=row["team"],
            model_a=row["model_a"],
            model_b=row["model_b"],
            counts=row["counts"],
            excluded_because=row["excluded_because"],
            revealed=list(row["revealed"]),
            style_a=dict(row["style_a"]),
            style_b=dict(row["style_b"]),
            voted_at=row["voted_at"],
        )


@dataclasses.dataclass(frozen=True)
class NewVote:
    vote: str
    counts: bool
    excluded_because: str | None
    revealed: list[dict[str, str]]
    style_a: dict[str, int]
    style_b: dict[str, int]


class VoteRefused(Exception):
    """The battle cannot take this vote: `code` says why (voted, void, busy, no answer)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_BATTLE = (
    "SELECT *, coalesce(busy_until > now(), false) AS busy FROM arena_battles"
    " WHERE id = %s AND owner = %s"
)
_CREATE = (
    "INSERT INTO arena_battles (id, owner, teams, scope, team, model_a, model_b, server_a,"
    " server_b, anonymous, conversation_a, conversation_b, status, claim, busy_until)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '[]', '[]', 'open', %s,"
    " now() + make_interval(secs => %s))"
)
_CLAIM = (
    "UPDATE arena_battles SET claim = %s, busy_until = now() + make_interval(secs => %s),"
    " updated_at = now() WHERE id = %s AND owner = %s AND status = 'open'"
    " AND (busy_until IS NULL OR busy_until <= now())"
    " RETURNING *, true AS busy"
)
# Only the turn that holds the lease (its `claim`) ends it: a turn that outlived its
# lease changes nothing, whatever came after it.
_HELD = " WHERE id = %s AND claim = %s AND status = 'open'"
_FINISH = (
    "UPDATE arena_battles SET conversation_a = %s, conversation_b = %s, turns = turns + 1,"
    " claim = NULL, busy_until = NULL, updated_at = now()" + _HELD
)
_RELEASE = "UPDATE arena_battles SET claim = NULL, busy_until = NULL, updated_at = now()" + _HELD
_VOID = (
    "UPDATE arena_battles SET status = 'void', void_reason = %s, claim = NULL,"
    " busy_until = NULL, updated_at = now()" + _HELD
)
_LOCK = (
    "SELECT *, coalesce(busy_until > now(), false) AS busy FROM arena_battles"
    " WHERE id = %s AND owner = %s FOR UPDATE"
)
_VOTE = (
    "INSERT INTO arena_votes (battle_id, vote, voter, teams, scope, team, model_a, model_b,"
    " conversation_a, conversation_b, counts, excluded_because, revealed, style_a, style_b)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *"
)
# One voter's votes are judged one at a time, so that two at once cannot both pass the
# daily limit; then their counted votes of the UTC day so far.
_VOTER_LOCK = "SELECT pg_advisory_xact_lock(hashtext('modelserve-arena-voter'), hashtext(%s))"
_COUNTED_TODAY = (
    "SELECT count(*) AS n FROM arena_votes WHERE voter = %s AND counts"
    " AND voted_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
)
_VOTED = "UPDATE arena_battles SET status = 'voted', updated_at = now() WHERE id = %s"
_VOTE_COUNTS = (
    "SELECT model, count(*) AS votes FROM (SELECT model_a AS model FROM arena_votes"
    " WHERE scope <> 'private' UNION ALL SELECT model_b FROM arena_votes"
    " WHERE scope <> 'private') AS sides GROUP BY model"
)
_VOTE_COLUMNS = (
    "battle_id, vote, voter, teams, scope, team, model_a, model_b, counts, excluded_because,"
    " revealed, style_a, style_b, voted_at"
)


class ArenaStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def _run(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        return await run_for_clients(self._pool, work, what="the arena's database")

    async def _one(self, query: str, params: Sequence[Any]) -> dict[str, Any] | None:
        async def work(conn: Conn) -> dict[str, Any] | None:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, params)
                return await cur.fetchone()

        return await self._run(work)

    async def _all(self, query: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        async def work(conn: Conn) -> list[dict[str, Any]]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, params)
                return await cur.fetchall()

        return await self._run(work)

    async def _execute(self, query: str, params: Sequence[Any]) -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(query, params)

        await self._run(work)

    # --- battles ------------------------------------------------------------------------

    async def create(
        self,
        battle_id: str,
        *,
        owner: str,
        teams: Sequence[str],
        scope: Scope,
        team: str | None,
        models: tuple[str, str],
        servers: tuple[str, str],
        anonymous: bool,
        claim: str,
        lease_seconds: float,
    ) -> None:
        """A new battle, claimed (by `claim`) for its first turn."""
        await self._execute(
            _CREATE,
            [
                battle_id,
                owner,
                list(teams),
                scope.value,
                team,
                models[0],
                models[1],
                servers[0],
                servers[1],
                anonymous,
                claim,
                lease_seconds,
            ],
        )

    async def get(self, battle_id: str, owner: str) -> Battle | None:
        """`owner`'s battle; anyone else's is not found."""
        row = await self._one(_BATTLE, [battle_id, owner])
        return Battle.of(row) if row is not None else None

    async def claim_turn(
        self, battle_id: str, owner: str, claim: str, lease_seconds: float
    ) -> Battle | None:
        """The battle, claimed by `claim` for a turn; None when it is not open or busy."""
        row = await self._one(_CLAIM, [claim, lease_seconds, battle_id, owner])
        return Battle.of(row) if row is not None else None

    async def finish_turn(
        self,
        battle_id: str,
        claim: str,
        conversation_a: list[Message],
        conversation_b: list[Message],
    ) -> None:
        """Both answers of the turn of `claim`, kept; the battle free for the next turn
        or a vote. Nothing, if that turn no longer holds the battle."""
        await self._execute(
            _FINISH, [Jsonb(conversation_a), Jsonb(conversation_b), battle_id, claim]
        )

    async def release(self, battle_id: str, claim: str) -> None:
        """The turn of `claim` given up (its answers discarded): the battle as before it."""
        await self._execute(_RELEASE, [battle_id, claim])

    async def void(self, battle_id: str, claim: str, reason: str) -> None:
        """The battle void, by the turn of `claim` (while it holds it)."""
        await self._execute(_VOID, [reason, battle_id, claim])

    async def battles(
        self, owner: str | None, limit: int, before: str | None = None
    ) -> list[Battle]:
        """Battles, newest first (`owner`'s, or everyone's), after the cursor `before`."""
        where, params = ["true"], list[Any]()
        if owner is not None:
            where.append("owner = %s")
            params.append(owner)
        if before is not None:
            # The cursor is looked up among the same battles: another's says nothing.
            where.append(
                "(created_at, id) < (SELECT created_at, id FROM arena_battles WHERE id = %s"
                " AND (%s::text IS NULL OR owner = %s))"
            )
            params += [before, owner, owner]
        query = (
            "SELECT *, coalesce(busy_until > now(), false) AS busy FROM arena_battles"
            f" WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT %s"
        )
        rows = await self._all(query, [*params, limit])
        return [Battle.of(row) for row in rows]

    # --- votes --------------------------------------------------------------------------

    async def vote(
        self,
        battle_id: str,
        owner: str,
        decide: Callable[[Battle], NewVote],
        counted_per_day: int = 0,
    ) -> tuple[Battle, VoteRecord] | None:
        """`owner`'s vote on their battle, as `decide` makes it from the battle (locked
        meanwhile), which is closed by it; None: no such battle of theirs. VoteRefused
        when the battle cannot take it. A vote that would count after `counted_per_day`
        counted votes of `owner` in this UTC day is kept as not counting (`daily_limit`;
        0: no limit)."""

        async def work(conn: Conn) -> tuple[Battle, VoteRecord] | None:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(_LOCK, [battle_id, owner])
                row = await cur.fetchone()
                if row is None:
                    return None
                battle = Battle.of(row)
                refusal = _refusal(battle)
                if refusal is not None:
                    raise refusal
                vote = decide(battle)
                if vote.counts and counted_per_day:
                    await cur.execute(_VOTER_LOCK, [owner])
                    await cur.execute(_COUNTED_TODAY, [owner])
                    counted = await cur.fetchone()
                    if counted is not None and counted["n"] >= counted_per_day:
                        vote = dataclasses.replace(
                            vote, counts=False, excluded_because="daily_limit"
                        )
                await cur.execute(
                    _VOTE,
                    [
                        battle.id,
                        vote.vote,
                        owner,
                        battle.teams,
                        battle.scope.value,
                        battle.team,
                        battle.model_a,
                        battle.model_b,
                        Jsonb(battle.conversation_a),
                        Jsonb(battle.conversation_b),
                        vote.counts,
                        vote.excluded_because,
                        Jsonb(vote.revealed),
                        Jsonb(vote.style_a),
                        Jsonb(vote.style_b),
                    ],
                )
                recorded = await cur.fetchone()
                assert recorded is not None
                await cur.execute(_VOTED, [battle.id])
                return dataclasses.replace(battle, status=Status.VOTED), VoteRecord.of(recorded)

        return await self._run(work)

    async def votes_per_model(self) -> dict[str, int]:
        """Votes each model took part in, counted or not (for drawing pairs)."""
        rows = await self._all(_VOTE_COUNTS, [])
        return {row["model"]: row["votes"] for row in rows}

    async def board_votes(self, team: str | None) -> list[VoteRecord]:
        """Every vote of a leaderboard, oldest first: the global one's (battles between
        the platform's models), or a team's (its members' votes on the platform's models,
        and everyone's on battles with the team's own)."""
        where, params = _board_scope(team)
        query = (
            f"SELECT {_VOTE_COLUMNS} FROM arena_votes WHERE {where} ORDER BY voted_at, battle_id"
        )
        return [VoteRecord.of(row) for row in await self._all(query, params)]

    async def board_version(self, team: str | None) -> tuple[int, str | None]:
        """What a leaderboard's votes are now, without reading them: how many, and the
        last one's battle (votes are only ever added)."""
        where, params = _board_scope(team)
        row = await self._one(
            "SELECT count(*) AS n, (array_agg(battle_id ORDER BY voted_at DESC, battle_id DESC))[1]"
            f" AS last FROM arena_votes WHERE {where}",
            params,
        )
        assert row is not None  # an aggregate always answers one row
        return int(row["n"]), row["last"]

    async def votes(
        self, voter: str | None, counts: bool | None, limit: int, before: str | None = None
    ) -> list[VoteRecord]:
        """Votes, newest first (`voter`'s or everyone's; counted ones, excluded ones or
        both), after the cursor `before` (a battle id)."""
        where, params = ["true"], list[Any]()
        if voter is not None:
            where.append("voter = %s")
            params.append(voter)
        if counts is not None:
            where.append("counts = %s")
            params.append(counts)
        if before is not None:
            where.append(
                "(voted_at, battle_id) < (SELECT voted_at, battle_id FROM arena_votes"
                " WHERE battle_id = %s AND (%s::text IS NULL OR voter = %s))"
            )
            params += [before, voter, voter]
        query = (
            f"SELECT {_VOTE_COLUMNS} FROM arena_votes WHERE {' AND '.join(where)}"
            " ORDER BY voted_at DESC, battle_id DESC LIMIT %s"
        )
        return [VoteRecord.of(row) for row in await self._all(query, [*params, limit])]


def _refusal(battle: Battle) -> VoteRefused | None:
    if battle.status is Status.VOTED:
        return VoteRefused("already_voted", f"the battle {battle.id} has its vote already")
    if battle.status is Status.VOID:
        reason = f": {battle.void_reason}" if battle.void_reason else ""
        return VoteRefused("battle_void", f"the battle {battle.id} is void{reason}")
    if battle.busy:
        return VoteRefused(
            "battle_busy", f"the battle {battle.id} is answering a turn: vote once it is done"
        )
    if battle.turns == 0:
        return VoteRefused("battle_unanswered", f"the battle {battle.id} has no answers yet")
    return None


def _board_scope(team: str | None) -> tuple[str, list[Any]]:
    """The votes of the global leaderboard, or of `team`'s (see `board_votes`)."""
    if team is None:
        return "scope = 'global'", []
    where = "(scope = 'global' AND %s = ANY(teams)) OR (scope = 'team' AND team = %s)"
    return where, [team, team]
