"""Who may use the platform: users, teams and API keys in PostgreSQL, and the tokens the
gateway issues for them, behind one class opened at start-up.

Failures a client causes (an unknown name, a name taken) are `ApiError`s with their own
codes, so that routes stay one call long.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from modelserve.common.database import DatabaseUnavailable, connection, open_pool
from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims, TokenSigner
from modelserve.gateway import migrations
from modelserve.gateway.accounts import (
    MIN_PASSWORD,
    NAME_PATTERN,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    Role,
    TeamPublic,
    User,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from modelserve.gateway.apikeys import KEY_JTI_PREFIX, new_key, parse_key, secret_matches
from modelserve.gateway.passwords import hash_password, needs_rehash, verify_password
from modelserve.gateway.settings import GatewaySettings

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
# Each Argon2 hash holds 64 MiB while it runs: a flood of logins must not exhaust memory.
HASHES_AT_ONCE = 4
KEYS_KEPT = 10_000
DEVELOPMENT_ADMIN_PASSWORD = "admin"
_USERS = """
    SELECT u.*, ARRAY(SELECT t.name FROM memberships m JOIN teams t ON t.id = m.team_id
                      WHERE m.user_id = u.id ORDER BY m.created_at, t.name) AS teams
    FROM users u
"""
_TEAMS = """
    SELECT t.name, t.created_at, ARRAY(SELECT u.username FROM memberships m
        JOIN users u ON u.id = m.user_id WHERE m.team_id = t.id ORDER BY u.username) AS members
    FROM teams t
"""
logger = logging.getLogger(__name__)


class IdentityUnavailable(ApiError):
    """PostgreSQL cannot be reached right now; the client may retry."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "database_unavailable", message, {"Retry-After": "1"})


@dataclass(frozen=True)
class Account:
    user: User
    teams: list[str]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Account:
        return cls(User.model_validate(row), list(row["teams"]))

    def public(self) -> UserPublic:
        assert self.user.created_at is not None
        return UserPublic(
            username=self.user.username,
            role=self.user.role,
            teams=self.teams,
            disabled=self.user.disabled,
            created_at=self.user.created_at,
        )


def _not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, f"{kind}_not_found", f"no {kind} named {name!r}")


class Identity:
    def __init__(
        self,
        settings: GatewaySettings,
        pool: AsyncConnectionPool,
        dummy_hash: str,
        signer: TokenSigner,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._signer = signer
        # Checked for unknown users, so that they take as long to refuse as known ones.
        self._dummy_hash = dummy_hash
        self._hashing = asyncio.Semaphore(HASHES_AT_ONCE)
        # API key -> (until, key id, claims): a program sends its key with every request.
        self._keys: dict[str, tuple[float, str, Claims]] = {}

    @classmethod
    async def open(cls, settings: GatewaySettings, signer: TokenSigner) -> Identity:
        url = settings.database_url.get_secret_value()
        if settings.migrate:
            await asyncio.to_thread(migrations.upgrade, url)
        pool = await open_pool(url, size=settings.database_pool_size, wait=5.0)
        try:
            identity = cls(settings, pool, await hash_password(new_key().secret), signer)
            await identity.ensure_first_admin()
        except BaseException:
            await pool.close()
            raise
        return identity

    async def close(self) -> None:
        await self._pool.close()

    async def _run(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        try:
            async with connection(self._pool) as conn:
                return await work(conn)
        except DatabaseUnavailable as error:
            # The details (hosts, users) are for the operator's log, not for clients.
            logger.warning("accounts database: %s", error)
            raise IdentityUnavailable("the accounts database is unavailable") from error
        except psycopg.DataError as error:
            # A value from the client that PostgreSQL cannot hold (a NUL in a name, say).
            message = error.diag.message_primary or str(error)
            raise ApiError(422, "invalid_request", message) from error

    async def _rows(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        async def work(conn: Conn) -> list[dict[str, Any]]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, params)
                return await cur.fetchall()

        return await self._run(work)

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await hash_password(password)

    # --- sign-in ----------------------------------------------------------------------

    async def ensure_first_admin(self) -> None:
        """The admin of the settings, unless a user of that name exists already."""
        name = self._settings.admin_username
        secret = self._settings.admin_password
        password = secret.get_secret_value() if secret else ""
        development = self._settings.tokens.development
        if not password and not development:
            logger.warning("GATEWAY_ADMIN_PASSWORD is not set: no first admin is created")
            return
        if not password:
            password = DEVELOPMENT_ADMIN_PASSWORD
            logger.warning("development mode: first admin %r, password %r", name, password)
        elif len(password) < MIN_PASSWORD and not development:
            raise ValueError(f"GATEWAY_ADMIN_PASSWORD needs at least {MIN_PASSWORD} characters")
        if await self._account(name) is not None:
            return
        if not re.fullmatch(NAME_PATTERN, name):
            raise ValueError(f"GATEWAY_ADMIN_USERNAME {name!r} does not match {NAME_PATTERN}")
        password_hash = await self._hash(password)

        async def work(conn: Conn) -> None:
            # Replicas starting together: the first one's insert stands.
            await conn.execute(
                "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s)"
                " ON CONFLICT (username) DO NOTHING",
                [name, password_hash, Role.ADMIN.value],
            )

        await self._run(work)
        logger.info("first admin %r created", name)

    async def authenticate(self, username: str, password: str) -> Account | None:
        """The account of `username` if `password` is its password and it is enabled."""
        account = await self._account(username)
        stored = account.user.password_hash if account else self._dummy_hash
        async with self._hashing:
            matches = await verify_password(stored, password)
        if account is None or not matches or account.user.disabled:
            return None
        if needs_rehash(stored):
            await self._store_password(username, await self._hash(password))
        return account

    def issue_token(self, account: Account) -> tuple[str, int]:
        """A token for `account` and how many seconds it lives."""
        lifetime = max(1, int(self._settings.tokens.expiry_hours * 3600))
        token = self._signer.sign(
            account.user.username,
            roles=[account.user.role.value],
            teams=account.teams,
            expires_in=lifetime,
        )
        return token, lifetime

    # --- users ------------------------------------------------------------------------

    async def _account(self, username: str) -> Account | None:
        rows = await self._rows(f"{_USERS} WHERE u.username = %s", [username])
        return Account.from_row(rows[0]) if rows else None

    async def user(self, username: str) -> Account:
        account = await self._account(username)
        if account is None:
            raise _not_found("user", username)
        return account

    async def users(self) -> list[Account]:
        return [
            Account.from_row(row) for row in await self._rows(f"{_USERS} ORDER BY u.username", [])
        ]

    async def create_user(self, new: UserCreate) -> Account:
        password_hash = await self._hash(new.password)

        async def work(conn: Conn) -> None:
            async with conn.transaction():
                cur = await conn.execute(
                    "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s)"
                    " ON CONFLICT (username) DO NOTHING RETURNING id",
                    [new.username, password_hash, new.role.value],
                )
                row = await cur.fetchone()
                if row is None:
                    raise ApiError(409, "user_exists", f"a user named {new.username!r} exists")
                await _set_teams(conn, row[0], new.teams)

        await self._run(work)
        return await self.user(new.username)

    async def update_user(self, username: str, update: UserUpdate) -> Account:
        async def work(conn: Conn) -> None:
            async with conn.transaction():
                cur = await conn.execute(
                    "UPDATE users SET role = coalesce(%s, role), disabled = coalesce(%s, disabled)"
                    " WHERE username = %s RETURNING id",
                    [update.role.value if update.role else None, update.disabled, username],
                )
                row = await cur.fetchone()
                if row is None:
                    raise _not_found("user", username)
                if update.teams is not None:
                    await conn.execute("DELETE FROM memberships WHERE user_id = %s", [row[0]])
                    await _set_teams(conn, row[0], update.teams)

        await self._run(work)
        self._keys.clear()  # the user's keys now stand for other claims, or none
        return await self.user(username)

    async def set_password(self, username: str, password: str) -> None:
        if not await self._store_password(username, await self._hash(password)):
            raise _not_found("user", username)

    async def _store_password(self, username: str, password_hash: str) -> bool:
        async def work(conn: Conn) -> bool:
            cur = await conn.execute(
                "UPDATE users SET password_hash = %s WHERE username = %s",
                [password_hash, username],
            )
            return cur.rowcount > 0

        return await self._run(work)

    # --- teams ------------------------------------------------------------------------

    async def teams(self) -> list[TeamPublic]:
        rows = await self._rows(f"{_TEAMS} ORDER BY t.name", [])
        return [TeamPublic.model_validate(row) for row in rows]

    async def team(self, name: str) -> TeamPublic:
        rows = await self._rows(f"{_TEAMS} WHERE t.name = %s", [name])
        if not rows:
            raise _not_found("team", name)
        return TeamPublic.model_validate(rows[0])

    async def create_team(self, name: str) -> TeamPublic:
        async def work(conn: Conn) -> None:
            cur = await conn.execute(
                "INSERT INTO teams (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", [name]
            )
            if cur.rowcount == 0:
                raise ApiError(409, "team_exists", f"a team named {name!r} exists")

        await self._run(work)
        return await self.team(name)

    async def delete_team(self, name: str) -> None:
        async def work(conn: Conn) -> int:
            cur = await conn.execute("DELETE FROM teams WHERE name = %s", [name])
            return cur.rowcount

        if not await self._run(work):
            raise _not_found("team", name)
        self._keys.clear()

    async def add_member(self, team: str, username: str) -> TeamPublic:
        """Idempotent: adding a member twice keeps the first joining time."""
        await self.team(team)
        account = await self.user(username)

        async def work(conn: Conn) -> None:
            assert account.user.id is not None
            await _set_teams(conn, account.user.id, [team])

        await self._run(work)
        self._keys.clear()
        return await self.team(team)

    async def remove_member(self, team: str, username: str) -> TeamPublic:
        """Idempotent: removing someone who is not a member changes nothing."""
        found = await self.team(team)
        account = await self.user(username)

        async def work(conn: Conn) -> None:
            await conn.execute(
                "DELETE FROM memberships WHERE user_id = %s"
                " AND team_id = (SELECT id FROM teams WHERE name = %s)",
                [account.user.id, team],
            )

        await self._run(work)
        self._keys.clear()
        return await self.team(found.name)

    # --- API keys ---------------------------------------------------------------------

    async def create_key(self, username: str, new: ApiKeyCreate) -> ApiKeyCreated:
        account = await self._account(username)
        if account is None or account.user.disabled:
            raise ApiError(403, "no_account", "API keys belong to enabled users of this gateway")
        parts = new_key()
        expires_at = (
            dt.datetime.now(dt.UTC) + dt.timedelta(days=new.expires_in_days)
            if new.expires_in_days
            else None
        )
        rows = await self._rows(
            "INSERT INTO api_keys (id, user_id, name, secret_sha256, expires_at)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id, name, created_at, expires_at",
            [parts.key_id, account.user.id, new.name, parts.secret_hash, expires_at],
        )
        return ApiKeyCreated(**rows[0], key=parts.key)

    async def keys(self, username: str) -> list[ApiKeyPublic]:
        """The keys of `username` that are not revoked (expired ones included)."""
        rows = await self._rows(
            "SELECT k.id, k.name, k.created_at, k.expires_at FROM api_keys k"
            " JOIN users u ON u.id = k.user_id"
            " WHERE u.username = %s AND k.revoked_at IS NULL ORDER BY k.created_at, k.id",
            [username],
        )
        return [ApiKeyPublic.model_validate(row) for row in rows]

    async def revoke_key(self, key_id: str, owner: str | None) -> None:
        """Revoke the key `key_id` of `owner` (of anyone: None). Another user's key is
        as unknown as one that does not exist."""

        async def work(conn: Conn) -> int:
            cur = await conn.execute(
                "UPDATE api_keys k SET revoked_at = now() FROM users u"
                " WHERE k.id = %s AND u.id = k.user_id AND k.revoked_at IS NULL"
                " AND (%s::text IS NULL OR u.username = %s)",
                [key_id, owner, owner],
            )
            return cur.rowcount

        if not await self._run(work):
            raise _not_found("key", key_id)
        for key in [key for key, (_, cached_id, _) in self._keys.items() if cached_id == key_id]:
            del self._keys[key]

    async def claims_for_key(self, key: str) -> Claims | None:
        """The claims of the key's user, or None for an unknown, expired or revoked key
        (or a disabled user). Remembered for `api_key_cache_seconds`."""
        cached = self._keys.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[2]
        self._keys.pop(key, None)
        parts = parse_key(key)
        if parts is None:
            return None
        rows = await self._rows(
            "SELECT k.secret_sha256, k.expires_at, a.username, a.role, a.teams"
            f" FROM api_keys k JOIN ({_USERS}) a ON a.id = k.user_id"
            " WHERE k.id = %s AND k.revoked_at IS NULL AND NOT a.disabled"
            " AND (k.expires_at IS NULL OR k.expires_at > now())",
            [parts.key_id],
        )
        if not rows or not secret_matches(parts, bytes(rows[0]["secret_sha256"])):
            return None
        row, now = rows[0], time.time()
        expires_at: dt.datetime | None = row["expires_at"]
        # Like a token issued now, unless the key expires sooner.
        lifetime = self._settings.tokens.expiry_hours * 3600
        if expires_at is not None:
            lifetime = min(lifetime, expires_at.timestamp() - now)
        tokens = self._settings.tokens
        claims = Claims(
            sub=row["username"],
            roles=[row["role"]],
            teams=list(row["teams"]),
            iss=tokens.issuer,
            aud=tokens.audience,
            iat=int(now),
            exp=int(now + lifetime),
            jti=f"{KEY_JTI_PREFIX}{parts.key_id}",
        )
        keep = min(self._settings.api_key_cache_seconds, lifetime)
        if keep > 0:
            if len(self._keys) >= KEYS_KEPT:
                self._keys.pop(next(iter(self._keys)))  # the oldest goes
            self._keys[key] = (time.monotonic() + keep, parts.key_id, claims)
        return claims


async def _set_teams(conn: Conn, user_id: int, teams: list[str]) -> None:
    """Add the user to `teams` (they must exist), in the order given."""
    for team in teams:
        cur = await conn.execute("SELECT id FROM teams WHERE name = %s", [team])
        row = await cur.fetchone()
        if row is None:
            raise ApiError(422, "team_not_found", f"no team named {team!r}")
        # clock_timestamp(), not now(): joining times keep the order within a transaction.
        await conn.execute(
            "INSERT INTO memberships (user_id, team_id, created_at)"
            " VALUES (%s, %s, clock_timestamp()) ON CONFLICT DO NOTHING",
            [user_id, row[0]],
        )
