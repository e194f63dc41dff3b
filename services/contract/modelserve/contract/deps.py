"""Dependency aliases of the contract service's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims
from modelserve.contract.decisions import Decider
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


DeciderDep = Annotated[Decider, Depends(_decider)]
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
