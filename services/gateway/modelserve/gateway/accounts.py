"""Users, teams and API keys: the tables (made by the Alembic migrations in `migrations/`,
which these models must match) and what the API reads and writes of them.

Names of users and teams become token subjects, contract scopes (`user:<name>`) and
Kubernetes label values, so they keep to what all three accept.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints
from sqlalchemy import Column, DateTime, LargeBinary, String, func
from sqlmodel import Field, SQLModel

from modelserve.common.tokens import ADMIN

# A Kubernetes label value: at most 63 characters, alphanumeric at both ends.
NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)]


class Role(StrEnum):
    ADMIN = ADMIN
    USER = "user"


def _created_at() -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), server_default=func.now(), nullable=False),
    )


# --- tables ---------------------------------------------------------------------------


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(sa_column=Column(String(63), unique=True, nullable=False))
    password_hash: str
    role: Role = Field(sa_type=String(16))
    disabled: bool = False
    created_at: dt.datetime | None = _created_at()
    # Tokens (and API-key claims) of this user issued before this are void: moved on when
    # the user is disabled, changes role, loses a team or changes password.
    not_before: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Team(SQLModel, table=True):
    __tablename__ = "teams"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(63), unique=True, nullable=False))
    created_at: dt.datetime | None = _created_at()


class Membership(SQLModel, table=True):
    """A user in a team; a user's first team (by joining time) is their default one."""

    __tablename__ = "memberships"

    user_id: int = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    team_id: int = Field(foreign_key="teams.id", primary_key=True, index=True, ondelete="CASCADE")
    created_at: dt.datetime | None = _created_at()


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True)  # the key id of `msk_<key id>_<secret>`
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    name: str
    secret_sha256: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: dt.datetime | None = _created_at()
    expires_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Revoked keys are kept, so that an audit can still tell whose a key was.
    revoked_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


ACCOUNT_TABLES = ("users", "teams", "memberships", "api_keys")


# --- the API --------------------------------------------------------------------------


class UserCreate(BaseModel):
    username: Name
    password: Password
    role: Role = Role.USER
    teams: list[Name] = []


class UserUpdate(BaseModel):
    """Fields left out stay as they are; `teams` replaces the user's teams."""

    role: Role | None = None
    disabled: bool | None = None
    teams: list[Name] | None = None


class UserPublic(BaseModel):
    username: str
    role: Role
    teams: list[str]
    disabled: bool
    created_at: dt.datetime


class PasswordChange(BaseModel):
    password: Password
    # Needed when people change their own password: a stolen token alone cannot.
    current_password: str | None = Field(default=None, max_length=MAX_PASSWORD)


class TeamCreate(BaseModel):
    name: Name


class TeamPublic(BaseModel):
    name: str
    members: list[str]
    created_at: dt.datetime


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyPublic(BaseModel):
    id: str
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str
    """The whole key: shown in this answer only; the gateway keeps only a hash."""
