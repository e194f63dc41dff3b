"""Which two models fight, on which side, and which leaderboard their battle feeds."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence

from modelserve.common.modelserve import RewardKind
from modelserve.common.tokens import Claims
from modelserve.gateway.arena.store import Scope
from modelserve.gateway.routing import Target


def draw_pair(names: Sequence[str], votes: Mapping[str, int], rng: random.Random) -> list[str]:
    """Two different models out of `names`, each drawn with a weight of 1/sqrt(1 + its
    votes so far) (a new model is drawn more often until it has votes of its own), in
    random order: the first is side a."""
    pool = sorted(set(names))
    if len(pool) < 2:
        raise ValueError("a pair needs at least two models")
    pair: list[str] = []
    for _ in range(2):
        weights = [1.0 / math.sqrt(1 + max(0, votes.get(name, 0))) for name in pool]
        chosen = rng.choices(pool, weights)[0]
        pair.append(chosen)
        pool.remove(chosen)
    rng.shuffle(pair)
    return pair


def reward_models(servers: Iterable[Target]) -> set[str]:
    """Served names that one of the platform's servers scores its answers with (its
    spec.scaling's rewardModel, with reward `model`): process reward models, which do not
    chat. A tenant's server names what it likes, so it removes nothing from the draws."""
    return {
        server.scaling.reward_model
        for server in servers
        if server.platform
        and server.scaling.reward_model is not None
        and server.scaling.reward in (None, RewardKind.MODEL)
    }


def scope_of(targets: Sequence[Target], claims: Claims) -> tuple[Scope, str | None]:
    """The leaderboard of a battle between `targets` (the servers the caller's requests
    go to): the global one when both are the platform's; a team's when the others are
    that team's (and the caller is in it); none for a model of one user's own."""
    teams: set[str] = set()
    for target in targets:
        if target.platform:
            continue
        if target.team is not None and target.team in claims.teams:
            teams.add(target.team)
            continue
        return Scope.PRIVATE, None
    if not teams:
        return Scope.GLOBAL, None
    if len(teams) == 1:
        return Scope.TEAM, teams.pop()
    return Scope.PRIVATE, None
