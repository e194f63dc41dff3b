"""Leased quota: slices of a principal's limited counters, granted to a gateway process
(the holder) that decides inference requests from them in its own memory.

A request decided from a lease costs the gateway no round trip to this service; limits
stay exact because every granted slice sits in its counter's `reserved` until usage
records settle it, the holder gives back what it did not take, or it expires and is
charged (migrations/functions_0002_leases.sql). The principal's limits are read from
PostgreSQL at every call, never from the replica's in-memory book, so that a holder that
refreshes them right after a contract change sees the change.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from pydantic import BaseModel, Field

from modelserve.common.errors import ApiError
from modelserve.contract import policy
from modelserve.contract.policy import Principal, Resource, Scope
from modelserve.contract.settings import ContractSettings
from modelserve.contract.store import LeaseWant, Store
from modelserve.contract.tables import BIGINT_MAX, Limits


class Want(BaseModel):
    scope: str = Field(min_length=1, description="user:<name> or team:<name>")
    metric: str = Field(min_length=1, description="requests/minute, tokens/minute, tokens/day…")
    amount: int = Field(ge=1, le=BIGINT_MAX)


class GiveBack(BaseModel):
    lease: uuid.UUID
    # What the holder's requests took from the lease; clamped to [0, granted].
    taken: int = Field(ge=-BIGINT_MAX - 1, le=BIGINT_MAX)


class LeaseRequest(BaseModel):
    holder: str = Field(min_length=1, max_length=200, description="the gateway process")
    principal: Principal | None = None
    want: list[Want] = Field(default=[], max_length=100)
    renew: list[uuid.UUID] = Field(default=[], max_length=10_000)
    give_back: list[GiveBack] = Field(default=[], max_length=10_000)


class ScopeLimits(BaseModel):
    key: str
    label: str
    limits: Limits


class PrincipalLimits(BaseModel):
    admin: bool
    team: str | None  # the acting team (policy.acting_team)
    scopes: list[ScopeLimits]


class GrantedLease(BaseModel):
    scope: str
    metric: str
    lease: uuid.UUID | None  # None: nothing granted
    granted: int
    limit: int | None
    window_ends_in: float  # seconds from the database's now to the end of the window


class LeaseAnswer(BaseModel):
    ttl: float
    # Present when the request named a principal.
    principal: PrincipalLimits | None = Field(default=None, exclude_if=lambda v: v is None)
    leases: list[GrantedLease]
    renewed: list[uuid.UUID]


def lease_wants(wants: Sequence[Want], scopes: Sequence[Scope], *, admin: bool) -> list[LeaseWant]:
    """Each want as the store grants it; a want of a counter that no limit of `scopes`
    holds is the client's mistake (422). Admins are never limited: they get nothing."""
    limited = policy.limited_counters(scopes)
    planned = []
    for index, want in enumerate(wants):
        charge = limited.get((want.scope, want.metric))
        if charge is None:
            known = ", ".join(f"{scope} {metric}" for scope, metric in limited) or "none"
            raise ApiError(
                422,
                "invalid_request",
                f"want[{index}]: {want.scope} {want.metric} is not a limited counter of the"
                f" principal (limited: {known})",
            )
        amount = 0 if admin else want.amount
        planned.append(LeaseWant(want.scope, want.metric, charge.unit, amount, charge.limit))
    return planned


async def principal_scopes(
    store: Store, defaults: Limits, principal: Principal
) -> tuple[str | None, list[Scope]]:
    """The acting team and the scopes of `principal`, their limits as PostgreSQL has them
    now: the user's contract over the defaults, the team's own contract."""
    team = policy.acting_team(principal, Resource())
    assert not isinstance(team, policy.Decision)  # no team named: the first, never a denial
    user_own, team_own = await store.limits_of(principal.subject, team)
    users = {principal.subject: policy.effective_limits(defaults, user_own)}
    teams = {team: team_own} if team is not None and team_own is not None else {}
    return team, policy.scopes(principal, team, defaults, users, teams)


async def lease(
    store: Store, settings: ContractSettings, defaults: Limits, body: LeaseRequest
) -> LeaseAnswer:
    """Give back, renew, then grant, as one transaction (Store.lease)."""
    if body.want and body.principal is None:
        raise ApiError(422, "invalid_request", "want needs a principal")
    about = None
    wants: list[LeaseWant] = []
    if body.principal is not None:
        team, scopes = await principal_scopes(store, defaults, body.principal)
        admin = body.principal.is_admin
        about = PrincipalLimits(
            admin=admin,
            team=team,
            scopes=[ScopeLimits(key=s.key, label=s.label, limits=s.limits) for s in scopes],
        )
        wants = lease_wants(body.want, scopes, admin=admin)
    grants, renewed = await store.lease(
        body.holder,
        give_back=[(back.lease, back.taken) for back in body.give_back],
        renew=body.renew,
        wants=wants,
        ttl=settings.lease_seconds,
        keep=settings.reservation_seconds,
    )
    return LeaseAnswer(
        ttl=settings.lease_seconds,
        principal=about,
        leases=[
            GrantedLease(
                scope=want.scope,
                metric=want.metric,
                lease=grant.lease,
                granted=grant.granted,
                limit=want.limit,
                window_ends_in=grant.window_ends_in,
            )
            for want, grant in zip(wants, grants, strict=True)
        ],
        renewed=renewed,
    )
