"""The models a caller may use: servers the route table lets them reach whose served
name their contract allows (GET /v1/models, /health, the arena's random pairs)."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from modelserve.common.tokens import Claims
from modelserve.gateway.contracts import ContractClient
from modelserve.gateway.routing import RouteTable, Target


def allowed_name(name: str, allowlists: Sequence[Sequence[str]]) -> bool:
    """Whether every allowlist has a pattern that matches the served name (as the
    contract service matches a request's model)."""
    return all(any(fnmatchcase(name, p) for p in patterns) for patterns in allowlists)


async def usable_targets(
    claims: Claims, routes: RouteTable, contracts: ContractClient | None
) -> list[Target]:
    """One target per model the caller may use: servers they may use (`routing`) whose
    served name their contract allows, as GET /models narrows the platform's records;
    every served name for admins, or without a contract service. A LoRA adapter is one
    of these models by its own name, which the contract must allow."""
    targets = routes.models(claims)
    if contracts is None or claims.is_admin or not targets:
        return targets
    allowlists = await contracts.model_allowlists(claims)
    return [target for target in targets if allowed_name(target.served_name, allowlists)]
