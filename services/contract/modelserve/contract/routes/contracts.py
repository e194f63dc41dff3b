"""Contracts: admins write them; everyone reads what applies to them."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from modelserve.common.auth import Admin, Caller
from modelserve.common.errors import ApiError
from modelserve.contract.deps import DeciderDep, readable
from modelserve.contract.policy import Principal
from modelserve.contract.tables import Contract, Limits, SubjectKind

router = APIRouter(prefix="/contracts", tags=["contracts"])


class MyContract(BaseModel):
    user: str
    # Your limits: your contract where it sets them, the global defaults elsewhere.
    limits: Limits
    team: str | None
    # The contract of the team you act for by default, if it has one.
    team_limits: Limits | None


class SubjectLimits(BaseModel):
    user: str | None
    team: str | None
    # A user's: their contract over the defaults (the defaults without one). A team's: its
    # contract; None when it has none (then no team limits apply).
    limits: Limits | None


@router.get("")
async def list_contracts(_: Admin, decider: DeciderDep) -> list[Contract]:
    return await decider.store.contracts()


@router.get("/defaults")
async def defaults(_: Caller, decider: DeciderDep) -> Limits:
    return decider.book.defaults


@router.get("/me")
async def my_contract(claims: Caller, decider: DeciderDep) -> MyContract:
    principal = Principal(subject=claims.sub, teams=claims.teams, roles=claims.roles)
    team = principal.teams[0] if principal.teams else None
    scopes = decider.book.scopes(principal, team)
    return MyContract(
        user=claims.sub,
        limits=scopes[0].limits,
        team=team,
        team_limits=scopes[1].limits if len(scopes) > 1 else None,
    )


@router.get("/limits")
async def limits_of(
    claims: Caller, decider: DeciderDep, user: str | None = None, team: str | None = None
) -> SubjectLimits:
    """The limits that hold for a user or a team, whose as for GET /usage: your own by
    default; a team's for its members; anyone's for admins."""
    user, team = readable(claims, user, team)
    book = decider.book
    if user is not None:
        return SubjectLimits(user=user, team=None, limits=book.users.get(user, book.defaults))
    assert team is not None
    return SubjectLimits(user=None, team=team, limits=book.teams.get(team))


@router.get("/{kind}/{name}")
async def read_contract(kind: SubjectKind, name: str, _: Admin, decider: DeciderDep) -> Contract:
    contract = await decider.store.contract(kind, name)
    if contract is not None:
        return contract
    raise ApiError(404, "contract_not_found", f"no contract for {kind} {name}")


@router.put("/{kind}/{name}")
async def put_contract(
    kind: SubjectKind, name: str, limits: Limits, _: Admin, decider: DeciderDep
) -> Contract:
    """Create or replace: fields left out are not set (defaults or no limit apply)."""
    contract = await decider.store.put_contract(kind, name, limits)
    decider.book.put(contract)  # this replica at once; the others on PostgreSQL's notification
    return contract


@router.delete("/{kind}/{name}", status_code=204)
async def delete_contract(kind: SubjectKind, name: str, _: Admin, decider: DeciderDep) -> Response:
    if not await decider.store.delete_contract(kind, name):
        raise ApiError(404, "contract_not_found", f"no contract for {kind} {name}")
    decider.book.remove(kind, name)
    return Response(status_code=204)
