"""Users and teams: admins manage them; people change their own password."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from modelserve.common.errors import ApiError
from modelserve.gateway.accounts import (
    PasswordChange,
    TeamCreate,
    TeamPublic,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from modelserve.gateway.auth import Admin, Caller
from modelserve.gateway.deps import IdentityDep
from modelserve.gateway.paging import Limit, Offset, set_total

router = APIRouter(tags=["users"])


@router.post("/users", status_code=201)
async def create_user(new: UserCreate, _: Admin, identity: IdentityDep) -> UserPublic:
    return (await identity.create_user(new)).public()


@router.get("/users")
async def list_users(
    _: Admin, identity: IdentityDep, response: Response, limit: Limit = 100, offset: Offset = 0
) -> list[UserPublic]:
    """Users by name, a page at a time (X-Total-Count: how many in all)."""
    accounts, total = await identity.users(limit=limit, offset=offset)
    set_total(response, total)
    return [account.public() for account in accounts]


@router.get("/users/{username}")
async def read_user(username: str, _: Admin, identity: IdentityDep) -> UserPublic:
    return (await identity.user(username)).public()


@router.patch("/users/{username}")
async def update_user(
    username: str, update: UserUpdate, _: Admin, identity: IdentityDep
) -> UserPublic:
    """Role, disabled (a disabled user cannot sign in), teams. Disabling, a new role or
    fewer teams revoke the user's tokens and their API keys' claims on every service
    within JWT_REVOCATION_SECONDS (on this replica at once)."""
    return (await identity.update_user(username, update)).public()


@router.put("/users/{username}/password", status_code=204)
async def set_password(
    username: str, change: PasswordChange, claims: Caller, identity: IdentityDep, request: Request
) -> Response:
    """Admins set anyone's password; people change their own, giving the current one
    (checked, and throttled, as a sign-in). Tokens issued before are revoked."""
    if not claims.is_admin:
        if claims.sub != username:
            raise ApiError(403, "admin_only", "only admins set other people's passwords")
        current = change.current_password or ""
        address = request.client.host if request.client else ""
        if await identity.authenticate(username, current, address) is None:
            raise ApiError(403, "wrong_password", "the current password is wrong")
    await identity.set_password(username, change.password)
    return Response(status_code=204)


@router.post("/teams", status_code=201)
async def create_team(new: TeamCreate, _: Admin, identity: IdentityDep) -> TeamPublic:
    return await identity.create_team(new.name)


@router.get("/teams")
async def list_teams(
    _: Admin, identity: IdentityDep, response: Response, limit: Limit = 100, offset: Offset = 0
) -> list[TeamPublic]:
    """Teams by name with their members, a page at a time (X-Total-Count: how many)."""
    teams, total = await identity.teams(limit=limit, offset=offset)
    set_total(response, total)
    return teams


@router.get("/teams/{name}")
async def read_team(name: str, _: Admin, identity: IdentityDep) -> TeamPublic:
    return await identity.team(name)


@router.delete("/teams/{name}", status_code=204)
async def delete_team(name: str, _: Admin, identity: IdentityDep) -> Response:
    await identity.delete_team(name)
    return Response(status_code=204)


@router.put("/teams/{name}/members/{username}")
async def add_member(name: str, username: str, _: Admin, identity: IdentityDep) -> TeamPublic:
    return await identity.add_member(name, username)


@router.delete("/teams/{name}/members/{username}")
async def remove_member(name: str, username: str, _: Admin, identity: IdentityDep) -> TeamPublic:
    return await identity.remove_member(name, username)
