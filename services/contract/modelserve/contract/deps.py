"""Dependency aliases of the contract service's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims
from modelserve.contract.decisions import Decider
from modelserve.contract.metrics import ContractMetrics
from modelserve.contract.policy import Principal
from modelserve.contract.settings import ContractSettings


async def _decider(request: Request) -> Decider:
    decider: Decider | None = getattr(request.app.state, "decider", None)
    if decider is None:  # the webhook app, before the API app's lifespan set it up
        raise ApiError(503, "starting", "the contract service is starting", {"Retry-After": "1"})
    return decider


async def _settings(request: Request) -> ContractSettings:
    settings: ContractSettings = request.app.state.settings
    return settings


async def _metrics(request: Request) -> ContractMetrics:
    metrics: ContractMetrics = request.app.state.metrics
    return metrics


DeciderDep = Annotated[Decider, Depends(_decider)]
MetricsDep = Annotated[ContractMetrics, Depends(_metrics)]
SettingsDep = Annotated[ContractSettings, Depends(_settings)]


def acting_for(claims: Claims, named: Principal | None) -> Principal:
    """Whom a request is about: the caller, or (services and admins only) someone named.

    A user's teams and roles come from their token, never from the body.
    """
    if named is None or (
        named.subject == claims.sub and not (claims.is_service or claims.is_admin)
    ):
        return Principal(subject=claims.sub, teams=claims.teams, roles=claims.roles)
    if not (claims.is_service or claims.is_admin):
        raise ApiError(403, "service_only", "only platform services may ask for someone else")
    return named


def readable(claims: Claims, user: str | None, team: str | None) -> tuple[str | None, str | None]:
    """The user or team a read of usage or limits is about, if the caller may read it:
    their own by default; a team's for its members; anyone's for admins."""
    if user is not None and team is not None:
        raise ApiError(400, "bad_request", "ask for a user or a team, not both")
    if team is None and user is None:
        user = claims.sub
    if not claims.is_admin:
        if user is not None and user != claims.sub:
            raise ApiError(403, "forbidden", "only admins read another user's usage or limits")
        if team is not None and team not in claims.teams:
            raise ApiError(403, "forbidden", f"you are not a member of team {team}")
    return user, team
