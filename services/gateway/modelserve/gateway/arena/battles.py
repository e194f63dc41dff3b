"""The arena's work behind its routes: starting and continuing battles, votes, the views
of battles and votes, and the leaderboards (docs/arena.md).

Each side of a battle is a chat completion the gateway sends for the caller through its
own proxy (`Proxy.respond`): the route table's choice of server (theirs, their team's,
the platform's), the contract's decision and usage, waking a sleeping model, all as if
they had sent it themselves. Both sides are decided before anything is answered: a side
the contract refuses refuses the battle, and what the other side reserved comes back.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
import uuid
from collections.abc import Mapping
from typing import Any

from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims
from modelserve.gateway.arena import ratings
from modelserve.gateway.arena.pairing import draw_pair, reward_models, scope_of
from modelserve.gateway.arena.requests import (
    MAX_CONVERSATION,
    BattleRequest,
    ChatMessage,
    TurnRequest,
)
from modelserve.gateway.arena.reveals import assistant_texts, revealed
from modelserve.gateway.arena.store import (
    ArenaStore,
    Battle,
    Message,
    NewVote,
    Status,
    VoteRecord,
    VoteRefused,
)
from modelserve.gateway.arena.turns import SIDES, Turn, TurnResponse, vote_path
from modelserve.gateway.asgi import ExchangeResponse
from modelserve.gateway.contracts import ContractClient
from modelserve.gateway.openai_errors import OpenAIError
from modelserve.gateway.proxy import Proxy
from modelserve.gateway.proxy_requests import CHAT
from modelserve.gateway.routing import Target, Unknown
from modelserve.gateway.settings import GatewaySettings
from modelserve.gateway.usable_models import usable_targets

# The request headers a side's request takes from the caller's.
_PASSED_HEADERS = ("x-request-id",)
# Leaderboard fits kept per replica, each while its votes stay the same: (team, style
# control) -> (how many votes and the latest one, the fit, the excluded votes by reason).
# A fit keeps its bootstrap resamples, so any `bootstrap` up to the most asked is answered
# without fitting again.
BOARDS_KEPT = 32
BoardKey = tuple[str | None, bool]
BoardVotes = tuple[int, str | None]


@dataclasses.dataclass
class _Board:
    votes: BoardVotes
    fit: ratings.Fit
    excluded: dict[str, int]


class Arena:
    def __init__(
        self,
        store: ArenaStore,
        proxy: Proxy,
        contracts: ContractClient | None,
        settings: GatewaySettings,
    ) -> None:
        self.store = store
        self._proxy = proxy
        self._contracts = contracts
        self._settings = settings
        self._rng = random.Random()
        # One leaderboard fit at a time on this replica (they share the process with the
        # proxy), and the latest boards, kept while their votes are the same.
        self._fitting = asyncio.Lock()
        self._boards: collections.OrderedDict[BoardKey, _Board] = collections.OrderedDict()

    # --- battles ------------------------------------------------------------------------

    async def start(
        self, claims: Claims, request: BattleRequest, headers: Mapping[str, str]
    ) -> TurnResponse:
        """A new battle, its first turn ready to be answered."""
        anonymous = request.models is None
        usable = await usable_targets(claims, self._proxy.table, self._contracts)
        if request.models is None:
            names = await self._draw(claims, usable)
        else:
            names = request.models
            allowed = {target.served_name for target in usable}
            for name in names:
                if name not in allowed:
                    raise ApiError(404, "model_not_found", f"you may use no model {name!r}")
        targets = [self._target(name, claims, anonymous=anonymous) for name in names]
        conversation = [_message(m) for m in request.messages]
        _check_size(conversation)
        conversations = {side: list(conversation) for side in SIDES}
        responses = await self._prepare(claims, targets, conversations, request, headers, anonymous)
        battle_id, claim = f"battle-{uuid.uuid4().hex}", uuid.uuid4().hex
        scope, team = scope_of(targets, claims)
        try:
            await self.store.create(
                battle_id,
                owner=claims.sub,
                teams=claims.teams,
                scope=scope,
                team=team,
                models=(names[0], names[1]),
                servers=(targets[0].server_id, targets[1].server_id),
                anonymous=anonymous,
                claim=claim,
                lease_seconds=self._settings.arena_turn_seconds,
            )
        except BaseException:
            for response in responses.values():
                response.abandon()
            raise
        return self._turn(battle_id, 1, claim, responses, conversations, request.stream)

    def _turn(
        self,
        battle_id: str,
        number: int,
        claim: str,
        responses: dict[str, ExchangeResponse],
        conversations: dict[str, list[Message]],
        stream: bool,
    ) -> TurnResponse:
        seconds = self._settings.arena_turn_seconds
        turn = Turn(battle_id, number, claim, responses, conversations, stream, seconds)
        return TurnResponse(self.store, self._proxy.metrics, turn)

    async def next_turn(
        self, claims: Claims, battle_id: str, request: TurnRequest, headers: Mapping[str, str]
    ) -> TurnResponse:
        """The next turn of the caller's open battle: the same two servers answer."""
        claim = uuid.uuid4().hex
        battle = await self.store.claim_turn(
            battle_id, claims.sub, claim, self._settings.arena_turn_seconds
        )
        if battle is None:
            raise _not_answerable(await self._battle(claims, battle_id))
        try:
            targets = [
                await self._server(battle, claim, server_id, model, claims)
                for server_id, model in (
                    (battle.server_a, battle.model_a),
                    (battle.server_b, battle.model_b),
                )
            ]
            added = [_message(m) for m in request.messages]
            conversations = {
                "a": [*battle.conversation_a, *added],
                "b": [*battle.conversation_b, *added],
            }
            for conversation in conversations.values():
                _check_size(conversation)
            responses = await self._prepare(
                claims, targets, conversations, request, headers, battle.anonymous
            )
        except BaseException:
            await self.store.release(battle.id, claim)
            raise
        number = battle.turns + 1
        return self._turn(battle.id, number, claim, responses, conversations, request.stream)

    async def _server(
        self, battle: Battle, claim: str, server_id: str, model: str, claims: Claims
    ) -> Target:
        """A side's server for a later turn: the one of the first turn, never another of
        the same name (which could be the caller's own, and tell the model), and as the
        same model of it (`model`: the server's own, or one of its LoRA adapters). Gone,
        or no longer the caller's to use: the battle cannot go on, and is void."""
        table = self._proxy.table
        target = table.server(server_id)
        if target is not None and target.served_name != model:
            target = target.as_adapter(model)  # None: the adapter is gone
        if target is None or not target.may_use(claims):
            reason = "a model of this battle is no longer served for you: the battle is void"
            await self.store.void(battle.id, claim, reason)
            raise ApiError(409, "battle_void", f"the battle {battle.id} is void: {reason}")
        found = table.readiness(target)
        if isinstance(found, Target):
            return found
        message = "a model of this battle cannot answer now: try the turn again later"
        if not battle.anonymous:
            message = found.message
        raise ApiError(
            503, "model_not_ready", message, headers={"Retry-After": str(found.retry_after)}
        )

    async def _draw(self, claims: Claims, usable: list[Target]) -> list[str]:
        """Two of the models the caller may use (`usable`) that serve or can wake, process
        reward models left out."""
        table = self._proxy.table
        scorers = reward_models(table.servers())
        names = [
            target.served_name
            for target in usable
            if target.served_name not in scorers
            and isinstance(table.lookup(target.served_name, claims), Target)
        ]
        if len(names) < 2:
            listed = ", ".join(names) or "none"
            raise ApiError(
                409,
                "not_enough_models",
                f"a battle needs two models you may use that serve or can wake; you have "
                f"{len(names)} ({listed})",
            )
        return draw_pair(names, await self.store.votes_per_model(), self._rng)

    def _target(self, model: str, claims: Claims, *, anonymous: bool) -> Target:
        """The server a side's requests go to: the caller's nearest of `model` that
        serves or can wake. In an anonymous battle, why not would name the model."""
        found = self._proxy.table.lookup(model, claims)
        if isinstance(found, Target):
            return found
        if anonymous:
            raise ApiError(
                503,
                "model_not_ready",
                "a model of this battle cannot answer now: start another battle",
                headers={"Retry-After": "1"},
            )
        if isinstance(found, Unknown):
            raise ApiError(404, "model_not_found", f"you may use no model {model!r}")
        raise ApiError(
            503,
            "model_not_ready",
            found.message,
            headers={"Retry-After": str(found.retry_after)},
        )

    async def _prepare(
        self,
        claims: Claims,
        targets: list[Target],
        conversations: dict[str, list[Message]],
        request: BattleRequest | TurnRequest,
        headers: Mapping[str, str],
        anonymous: bool,
    ) -> dict[str, ExchangeResponse]:
        """Each side's response, decided by the contract; none if either is refused
        (the other's reservation given back)."""
        max_tokens = min(
            request.max_tokens or self._settings.arena_max_tokens, self._settings.arena_max_tokens
        )
        passed = {name: headers[name] for name in _PASSED_HEADERS if name in headers}
        responses: dict[str, ExchangeResponse] = {}
        try:
            for side, target in zip(SIDES, targets, strict=True):
                payload: dict[str, Any] = {
                    "model": target.served_name,
                    "messages": conversations[side],
                    "max_tokens": max_tokens,
                    "stream": True,
                }
                if request.temperature is not None:
                    payload["temperature"] = request.temperature
                responses[side] = await self._proxy.respond(claims, CHAT, target, payload, passed)
        except OpenAIError as error:
            for response in responses.values():
                response.abandon()
            raise _refused(error, side, anonymous=anonymous) from error
        except BaseException:
            for response in responses.values():
                response.abandon()
            raise
        return responses

    async def _battle(self, claims: Claims, battle_id: str) -> Battle:
        battle = await self.store.get(battle_id, claims.sub)
        if battle is None:
            raise ApiError(404, "battle_not_found", f"you have no battle {battle_id!r}")
        return battle

    # --- votes --------------------------------------------------------------------------

    async def vote(self, claims: Claims, battle_id: str, vote: str) -> dict[str, Any]:
        """The caller's vote on their battle: kept with the battle as it is, the models
        revealed."""

        def decide(battle: Battle) -> NewVote:
            return judged(battle, vote)

        try:
            voted = await self.store.vote(
                battle_id, claims.sub, decide, self._settings.arena_counted_votes_per_day
            )
        except VoteRefused as refusal:
            raise ApiError(409, refusal.code, str(refusal)) from refusal
        if voted is None:
            raise ApiError(404, "battle_not_found", f"you have no battle {battle_id!r}")
        _, record = voted
        self._proxy.metrics.arena_votes.labels(
            str(record.counts).lower(), record.excluded_because or ""
        ).inc()
        return vote_view(record)

    async def battle(self, claims: Claims, battle_id: str) -> dict[str, Any]:
        return battle_view(await self._battle(claims, battle_id))

    # --- leaderboards -------------------------------------------------------------------

    async def leaderboard(
        self, claims: Claims, team: str | None, *, style_control: bool, rounds: int | None
    ) -> dict[str, Any]:
        if team is not None and team not in claims.teams and not claims.is_admin:
            raise ApiError(
                403, "forbidden", f"only members of the team {team!r} see its leaderboard"
            )
        rounds = self._settings.arena_bootstrap_rounds if rounds is None else rounds
        key: BoardKey = (team, style_control)
        # A board whose votes have not changed is answered from memory: the votes are read
        # (and the ratings fitted) only when there are new ones, and only the resamples of
        # a larger `bootstrap` than any asked before are drawn.
        votes: BoardVotes = await self.store.board_version(team)
        async with self._fitting:
            board = self._boards.get(key)
            if board is not None and board.votes == votes:
                self._boards.move_to_end(key)
            else:
                records = await self.store.board_votes(team)
                votes = (len(records), records[-1].battle_id if records else None)
                counted = [vote_of(record) for record in records if record.counts]
                fit = await asyncio.to_thread(
                    ratings.Fit, counted, style_control=style_control, seed=0
                )
                board = _Board(votes, fit, excluded_of(records))
                self._boards[key] = board
                while len(self._boards) > BOARDS_KEPT:
                    self._boards.popitem(last=False)
            if board.fit.rounds_drawn < rounds:
                table = await asyncio.to_thread(board.fit.leaderboard, rounds)
            else:
                table = board.fit.leaderboard(rounds)
        return board_view(table, team, board.excluded)


def excluded_of(records: list[VoteRecord]) -> dict[str, int]:
    """Votes that do not count, by reason."""
    excluded: dict[str, int] = {}
    for record in records:
        if not record.counts:
            reason = record.excluded_because or "excluded"
            excluded[reason] = excluded.get(reason, 0) + 1
    return excluded


def _check_size(conversation: list[Message]) -> None:
    size = sum(len(message["content"]) for message in conversation)
    if size > MAX_CONVERSATION:
        raise ApiError(
            422,
            "conversation_too_long",
            f"a battle's conversation holds at most {MAX_CONVERSATION} characters; this one "
            f"would hold {size}: start another battle",
        )


def _message(message: ChatMessage) -> Message:
    return {"role": message.role, "content": message.content}


def _refused(error: OpenAIError, side: str, *, anonymous: bool) -> ApiError:
    """A side's refusal (the contract's, a model that cannot wake), as the battle's. In an
    anonymous battle, the message would name the model: only its code and side are told."""
    if anonymous:
        message = f"side {side} of the battle cannot be answered now ({error.code}): try again"
    else:
        message = error.message
    return ApiError(error.status_code, error.code or "refused", message, dict(error.headers or {}))


def _not_answerable(battle: Battle) -> ApiError:
    if battle.status is Status.VOTED:
        return ApiError(409, "battle_closed", f"the battle {battle.id} has its vote: start another")
    if battle.status is Status.VOID:
        return ApiError(409, "battle_void", f"the battle {battle.id} is void: {battle.void_reason}")
    return ApiError(409, "battle_busy", f"the battle {battle.id} is answering a turn")


def judged(battle: Battle, vote: str) -> NewVote:
    """Whether a vote on `battle` counts: only when the pair was drawn at random and no
    answer named either model."""
    texts = {
        "a": assistant_texts(battle.conversation_a),
        "b": assistant_texts(battle.conversation_b),
    }
    found = revealed(texts, [battle.model_a, battle.model_b])
    excluded = None
    if not battle.anonymous:
        excluded = "models_chosen"
    elif found:
        excluded = "identity_revealed"
    return NewVote(
        vote=vote,
        counts=excluded is None,
        excluded_because=excluded,
        revealed=found,
        style_a=dataclasses.asdict(ratings.style_of("\n".join(texts["a"]))),
        style_b=dataclasses.asdict(ratings.style_of("\n".join(texts["b"]))),
    )


def vote_of(record: VoteRecord) -> ratings.Vote:
    return ratings.Vote(
        record.model_a,
        record.model_b,
        record.vote,  # type: ignore[arg-type]
        ratings.Style(**record.style_a),
        ratings.Style(**record.style_b),
    )


def vote_view(record: VoteRecord) -> dict[str, Any]:
    return {
        "battle_id": record.battle_id,
        "vote": record.vote,
        "models": {"a": record.model_a, "b": record.model_b},
        "counts": record.counts,
        "excluded_because": record.excluded_because,
        "revealed": record.revealed,
        "voter": record.voter,
        "scope": record.scope.value,
        "team": record.team,
        "voted_at": record.voted_at.isoformat(),
    }


def battle_view(battle: Battle) -> dict[str, Any]:
    """A battle as its owner sees it: the models only once it has its vote, and the board
    it feeds (which tells whose models they are) only then too, if they were drawn."""
    voted = battle.status is Status.VOTED
    told = voted or not battle.anonymous
    return {
        "id": battle.id,
        "object": "arena.battle",
        "status": battle.status.value,
        "busy": battle.busy,
        "turns": battle.turns,
        "anonymous": battle.anonymous,
        "scope": battle.scope.value if told else None,
        "team": battle.team if told else None,
        "models": {"a": battle.model_a, "b": battle.model_b} if voted else None,
        "conversations": {"a": battle.conversation_a, "b": battle.conversation_b},
        "void_reason": battle.void_reason,
        "vote": None if voted or battle.status is not Status.OPEN else vote_path(battle.id),
        "created_at": battle.created_at.isoformat(),
        "updated_at": battle.updated_at.isoformat(),
    }


def board_view(
    board: ratings.Leaderboard, team: str | None, excluded: dict[str, int]
) -> dict[str, Any]:
    return {
        "object": "arena.leaderboard",
        "scope": "team" if team is not None else "global",
        "team": team,
        "votes": board.votes,
        "excluded": excluded,
        "bootstrap_rounds": board.bootstrap_rounds,
        "style_control": board.style_control,
        "style_coefficients": (
            {name: round(value, 4) for name, value in board.style_coefficients.items()}
            if board.style_coefficients is not None
            else None
        ),
        "models": [
            {
                "rank": standing.rank,
                "model": standing.model,
                "rating": round(standing.rating, 1),
                "ci": {"lower": round(standing.lower, 1), "upper": round(standing.upper, 1)},
                "votes": standing.votes,
                "wins": standing.wins,
                "losses": standing.losses,
                "ties": standing.ties,
                "win_rate": round(standing.win_rate, 4),
                "elo": round(standing.elo, 1),
            }
            for standing in board.standings
        ],
    }
