"""Who may use the platform: users, teams and API keys in PostgreSQL, the tokens the
gateway issues for them, and what is revoked, behind one class opened at start-up.

Revocation: each user has a not-before time, moved to the next whole second whenever the
user is disabled, changes role, loses a team or changes password; tokens (and API-key
claims) issued before it are void. With the revoked keys it makes the revocation list
that this gateway's verifier reads from the database, and that `GET /auth/revocations`
publishes to the other services.

Failures a client causes (an unknown name, a name taken) are `ApiError`s with their own
codes, so that routes stay one call long.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import psycopg
from prometheus_client import CollectorRegistry, Counter
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from modelserve.common.database import open_pool, run_for_clients
from modelserve.common.errors import ApiError
from modelserve.common.revocations import Revocations, RevocationsUnavailable, subject_digest
from modelserve.common.tokens import Claims, TokenSigner, TokenVerifier
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
from modelserve.gateway.throttling import BoundedGate, Busy, SlidingWindow

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
KEYS_KEPT = 10_000
# Users whose not-before is this recent are listed even when tokens live shorter.
REVOCATIONS_KEPT_SECONDS = 3600
# Moves a user's not-before to %(not_before)s (set by `_not_before`).
# Always past the one it had: a token issued after an earlier bump in the same second got
# that second as its `iat` (see `_issued_at`), and a second bump must void it too. Bumps
# that pile up in one second move it ahead by a second each (within the verifiers' leeway).
_BUMP = "not_before = GREATEST(to_timestamp(%(not_before)s), not_before + interval '1 second')"
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


@dataclass(frozen=True)
class Account:
    user: User
    teams: list[str]
    # When the row was read (seconds since the epoch): a token made from it says so.
    read_at: int = 0

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


def _not_before() -> int:
    """A not-before from now: the next whole second, so that a token issued (`iat`, whole
    seconds) earlier in this second is void too. Tokens issued after it say at least this
    second (see `_issued_at`)."""
    return math.floor(time.time()) + 1


def _issued_at(not_before: dt.datetime | None, read_at: int) -> int:
    """`iat` for a token made from an account row read at `read_at`: never after that read
    (a revocation that lands while the password is checked then voids the token), never
    before the subject's not-before, which may be up to a second ahead (within every
    verifier's leeway)."""
    return max(read_at, int(not_before.timestamp())) if not_before is not None else read_at


class IdentityMetrics:
    """Counters of sign-ins and of the work they and API keys cost; registered in the
    gateway's registry by the app (none of them carries a label a client chooses)."""

    def __init__(self) -> None:
        self.sign_ins = Counter(
            "modelserve_gateway_sign_ins",
            "POST /auth/token answers: ok, invalid (401), throttled (429), busy (503).",
            ["result"],
            registry=None,
        )
        self.password_checks = Counter(
            "modelserve_gateway_password_checks",
            "Argon2 password verifications run (sign-ins and password changes).",
            registry=None,
        )
        self.api_key_queries = Counter(
            "modelserve_gateway_api_key_queries",
            "Database lookups of API keys (unknown key ids are then remembered a while).",
            registry=None,
        )
        self.revocation_queries = Counter(
            "modelserve_gateway_revocation_queries",
            "Database reads of the revocation list (at most one per JWT_REVOCATION_SECONDS,"
            " however often it is asked for).",
            registry=None,
        )

    def register(self, registry: CollectorRegistry) -> None:
        counters = (
            self.sign_ins,
            self.password_checks,
            self.api_key_queries,
            self.revocation_queries,
        )
        for counter in counters:
            registry.register(counter)


class Identity:
    def __init__(
        self,
        settings: GatewaySettings,
        pool: AsyncConnectionPool,
        dummy_hash: str,
        signer: TokenSigner,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._signer = signer
        # Checked for unknown users, so that they take as long to refuse as known ones.
        self._dummy_hash = dummy_hash
        # Each Argon2 hash holds 64 MiB while it runs: a flood of sign-ins must neither
        # exhaust memory nor queue without end.
        self._hashing = BoundedGate(settings.password_checks_at_once, settings.password_check_queue)
        window = settings.sign_in_window_seconds
        self._user_failures = SlidingWindow(settings.sign_in_failures_per_user, window)
        self._address_failures = SlidingWindow(settings.sign_in_failures_per_address, window)
        # Key id -> until when it is known not to resolve (unknown, revoked, expired, or
        # its user disabled): a flood of one made-up key costs one query.
        self._unknown_keys: dict[str, float] = {}
        self.metrics = IdentityMetrics()
        # Every token the gateway takes goes through this: JWTs and API keys, against the
        # revocation list read from this database.
        self.verifier = TokenVerifier.from_settings(
            settings.tokens,
            http,
            revocation_source=self._revocation_source,
            key_resolver=self.claims_for_key,
        )

    @classmethod
    async def open(
        cls, settings: GatewaySettings, signer: TokenSigner, http: httpx.AsyncClient | None = None
    ) -> Identity:
        url = settings.database_url.get_secret_value()
        if settings.migrate:
            await asyncio.to_thread(migrations.upgrade, url)
        pool = await open_pool(url, size=settings.database_pool_size, wait=5.0)
        try:
            identity = cls(settings, pool, await hash_password(new_key().secret), signer, http)
            await identity.ensure_first_admin()
        except BaseException:
            await pool.close()
            raise
        return identity

    @property
    def pool(self) -> AsyncConnectionPool:
        """The gateway database's pool, for the arena's tables (one pool per process)."""
        return self._pool

    async def close(self) -> None:
        await self._pool.close()

    async def _run(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        return await run_for_clients(self._pool, work, what="the accounts database")

    async def _rows(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        async def work(conn: Conn) -> list[dict[str, Any]]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, params)
                return await cur.fetchall()

        return await self._run(work)

    async def _hash(self, password: str) -> str:
        async with self._argon2():
            return await hash_password(password)

    @contextlib.asynccontextmanager
    async def _argon2(self) -> AsyncIterator[None]:
        """A turn for Argon2 work, or 503 `sign_in_busy` when too many wait already."""
        try:
            async with self._hashing.slot():
                yield
        except Busy:
            raise ApiError(
                503, "sign_in_busy", "too many sign-ins at once; try again", {"Retry-After": "1"}
            ) from None

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

    async def authenticate(self, username: str, password: str, address: str) -> Account | None:
        """The account of `username` if `password` is its password and it is enabled.

        Throttled: 429 `too_many_sign_ins` (with Retry-After) once `username` failed
        `sign_in_failures_per_user` times, or sign-ins from `address` failed
        `sign_in_failures_per_address` times, within the window; 503 `sign_in_busy` when
        the Argon2 queue is full. A refused attempt costs no Argon2 work."""
        wait = max(
            self._user_failures.retry_after(username) or 0,
            self._address_failures.retry_after(address) or 0,
        )
        if wait:
            self.metrics.sign_ins.labels("throttled").inc()
            raise ApiError(
                429,
                "too_many_sign_ins",
                f"too many sign-in attempts; try again in {wait} s",
                {"Retry-After": str(wait)},
            )
        # Counted as a failure before the check, so that attempts in flight at once count
        # too (else a burst of concurrent guesses all pass the check above); a success or
        # a busy refusal takes its count back.
        self._user_failures.record(username)
        self._address_failures.record(address)
        try:
            account = await self._check_password(username, password)
        except ApiError as error:
            if error.code == "sign_in_busy":
                self.metrics.sign_ins.labels("busy").inc()
            self._user_failures.forget_one(username)
            self._address_failures.forget_one(address)
            raise
        if account is not None:
            self._user_failures.forget_one(username)
            self._address_failures.forget_one(address)
        self.metrics.sign_ins.labels("ok" if account else "invalid").inc()
        return account

    async def _check_password(self, username: str, password: str) -> Account | None:
        account = await self._account(username)
        stored = account.user.password_hash if account else self._dummy_hash
        async with self._argon2():
            self.metrics.password_checks.inc()
            matches = await verify_password(stored, password)
        if account is None or not matches or account.user.disabled:
            return None
        if needs_rehash(stored):
            await self._store_password(username, await self._hash(password), revoke=False)
        return account

    def issue_token(self, account: Account) -> tuple[str, int]:
        """A token for `account` and how many seconds it lives."""
        lifetime = max(1, int(self._settings.tokens.expiry_seconds))
        token = self._signer.sign(
            account.user.username,
            roles=[account.user.role.value],
            teams=account.teams,
            expires_in=lifetime,
            issued_at=_issued_at(account.user.not_before, account.read_at or int(time.time())),
        )
        return token, lifetime

    async def delegate(
        self, username: str, key_id: str | None, queued_at: int | None = None
    ) -> tuple[str, int]:
        """A token for `username` as they are now (role, teams), for a platform service
        that runs their queued work (the jobs service): 403 `delegation_refused` for an
        unknown or disabled user, and for a key (`key_id`, the one the work was queued
        with) that is not theirs, revoked or expired. A token for a key carries its id,
        so revoking the key voids it at once. Work queued (`queued_at`, seconds) before
        the user's sessions were revoked (a password change, "sign out everywhere") is
        refused too: it may have been queued with a stolen token."""
        account = await self._account(username)
        if account is None or account.user.disabled:
            raise ApiError(
                403, "delegation_refused", f"{username!r} is not an enabled user of this gateway"
            )
        not_before = account.user.not_before
        if queued_at is not None and not_before is not None and not_before.timestamp() > queued_at:
            raise ApiError(
                403,
                "delegation_refused",
                f"{username!r} revoked their sessions after this work was queued",
            )
        lifetime = max(1, int(self._settings.tokens.expiry_seconds))
        jti = None
        if key_id is not None:
            rows = await self._rows(
                "SELECT k.expires_at FROM api_keys k WHERE k.id = %s AND k.user_id = %s"
                " AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())",
                [key_id, account.user.id],
            )
            if not rows:
                raise ApiError(
                    403,
                    "delegation_refused",
                    f"the API key {key_id} of {username!r} is revoked, expired or not theirs",
                )
            expires_at: dt.datetime | None = rows[0]["expires_at"]
            if expires_at is not None:
                lifetime = max(1, min(lifetime, int(expires_at.timestamp() - time.time())))
            jti = f"{KEY_JTI_PREFIX}{key_id}"
        token = self._signer.sign(
            account.user.username,
            roles=[account.user.role.value],
            teams=account.teams,
            expires_in=lifetime,
            issued_at=_issued_at(account.user.not_before, account.read_at or int(time.time())),
            jti=jti,
        )
        return token, lifetime

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys of the gateway's tokens (none with HS256)."""
        return self._signer.public_jwks()

    # --- revocation -------------------------------------------------------------------

    async def revocations(self) -> Revocations:
        """Users whose not-before may still void an unexpired token, and revoked keys, as
        the database has them now (read by the verifier's list, `published_revocations`)."""
        self.metrics.revocation_queries.inc()
        tokens = self._settings.tokens
        window = max(tokens.expiry_seconds + tokens.leeway_seconds, REVOCATIONS_KEPT_SECONDS)
        users = await self._rows(
            "SELECT username, not_before FROM users"
            " WHERE not_before > now() - make_interval(secs => %s) ORDER BY username",
            [window],
        )
        keys = await self._rows(
            "SELECT id FROM api_keys WHERE revoked_at > now() - make_interval(secs => %s)"
            " ORDER BY id",
            [window],
        )
        listed = {
            "users": {
                subject_digest(row["username"]): int(row["not_before"].timestamp()) for row in users
            },
            "keys": [row["id"] for row in keys],
        }
        canonical = json.dumps(listed, sort_keys=True, separators=(",", ":")).encode()
        version = hashlib.sha256(canonical).hexdigest()[:32]
        return Revocations.model_validate({"version": version, **listed})

    async def published_revocations(self) -> Revocations:
        """The list this gateway checks tokens against (read from the database at most
        every JWT_REVOCATION_SECONDS, at once after a change made here): what
        `GET /auth/revocations` answers, so that asking for it costs no query."""
        listed = await self.verifier.revocation_list()
        if listed is None:  # not without revocations: the gateway always has a source
            return await self.revocations()
        return listed

    async def _revocation_source(self) -> Revocations:
        try:
            return await self.revocations()
        except ApiError as error:  # 503: the database cannot be reached
            raise RevocationsUnavailable(str(error.detail)) from None

    def _revoked_here(self) -> None:
        """Something was revoked through this replica: it holds from the next request."""
        self._unknown_keys.clear()
        self.verifier.forget()

    # --- users ------------------------------------------------------------------------

    async def _account(self, username: str) -> Account | None:
        read_at = int(time.time())
        rows = await self._rows(f"{_USERS} WHERE u.username = %s", [username])
        return dataclasses.replace(Account.from_row(rows[0]), read_at=read_at) if rows else None

    async def user(self, username: str) -> Account:
        account = await self._account(username)
        if account is None:
            raise _not_found("user", username)
        return account

    async def users(self, *, limit: int, offset: int) -> tuple[list[Account], int]:
        """A page of the users by name, and how many there are in all."""
        rows = await self._rows(f"{_USERS} ORDER BY u.username LIMIT %s OFFSET %s", [limit, offset])
        return [Account.from_row(row) for row in rows], await self._count("users")

    async def _count(self, table: str) -> int:
        rows = await self._rows(f"SELECT count(*) AS n FROM {table}", [])
        return int(rows[0]["n"])

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
        """Disabling, a new role or fewer teams revoke the user's tokens and keys' claims
        (they move the not-before on); enabling or more teams do not."""

        async def work(conn: Conn) -> None:
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT id, role, disabled, ARRAY(SELECT t.name FROM memberships m"
                    " JOIN teams t ON t.id = m.team_id WHERE m.user_id = users.id)"
                    " FROM users WHERE username = %s FOR UPDATE",
                    [username],
                )
                row = await cur.fetchone()
                if row is None:
                    raise _not_found("user", username)
                user_id, role, disabled, teams = row
                revoke = (
                    (update.role is not None and update.role.value != role)
                    or (update.disabled is True and not disabled)
                    or (update.teams is not None and bool(set(teams) - set(update.teams)))
                )
                await conn.execute(
                    "UPDATE users SET role = coalesce(%(role)s, role),"
                    " disabled = coalesce(%(disabled)s, disabled),"
                    f" {_BUMP if revoke else 'not_before = not_before'} WHERE id = %(id)s",
                    {
                        "role": update.role.value if update.role else None,
                        "disabled": update.disabled,
                        "not_before": _not_before(),
                        "id": user_id,
                    },
                )
                if update.teams is not None:
                    await conn.execute("DELETE FROM memberships WHERE user_id = %s", [user_id])
                    await _set_teams(conn, user_id, update.teams)

        await self._run(work)
        self._revoked_here()  # the user's keys may now stand for other claims, or none
        return await self.user(username)

    async def set_password(self, username: str, password: str) -> None:
        """Also revokes the user's tokens: whoever held the old password signs in again."""
        if not await self._store_password(username, await self._hash(password), revoke=True):
            raise _not_found("user", username)
        self._revoked_here()

    async def _store_password(self, username: str, password_hash: str, *, revoke: bool) -> bool:
        async def work(conn: Conn) -> bool:
            cur = await conn.execute(
                "UPDATE users SET password_hash = %(hash)s"
                f"{', ' + _BUMP if revoke else ''} WHERE username = %(username)s",
                {"hash": password_hash, "username": username, "not_before": _not_before()},
            )
            return cur.rowcount > 0

        return await self._run(work)

    # --- teams ------------------------------------------------------------------------

    async def teams(self, *, limit: int, offset: int) -> tuple[list[TeamPublic], int]:
        """A page of the teams by name, with their members, and how many there are."""
        rows = await self._rows(f"{_TEAMS} ORDER BY t.name LIMIT %s OFFSET %s", [limit, offset])
        return [TeamPublic.model_validate(row) for row in rows], await self._count("teams")

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
        """Its members' tokens name the team: they are revoked."""

        async def work(conn: Conn) -> int:
            async with conn.transaction():
                await conn.execute(
                    f"UPDATE users SET {_BUMP} WHERE id IN (SELECT m.user_id FROM memberships m"
                    " JOIN teams t ON t.id = m.team_id WHERE t.name = %(name)s)",
                    {"name": name, "not_before": _not_before()},
                )
                cur = await conn.execute("DELETE FROM teams WHERE name = %s", [name])
                return cur.rowcount

        if not await self._run(work):
            raise _not_found("team", name)
        self._revoked_here()

    async def add_member(self, team: str, username: str) -> TeamPublic:
        """Idempotent: adding a member twice keeps the first joining time."""
        await self.team(team)
        account = await self.user(username)

        async def work(conn: Conn) -> None:
            assert account.user.id is not None
            await _set_teams(conn, account.user.id, [team])

        await self._run(work)
        self._revoked_here()
        return await self.team(team)

    async def remove_member(self, team: str, username: str) -> TeamPublic:
        """Idempotent: removing someone who is not a member changes nothing."""
        found = await self.team(team)
        account = await self.user(username)

        async def work(conn: Conn) -> None:
            async with conn.transaction():
                cur = await conn.execute(
                    "DELETE FROM memberships WHERE user_id = %s"
                    " AND team_id = (SELECT id FROM teams WHERE name = %s)",
                    [account.user.id, team],
                )
                if cur.rowcount:  # the user's tokens name the team they left
                    await conn.execute(
                        f"UPDATE users SET {_BUMP} WHERE id = %(id)s",
                        {"id": account.user.id, "not_before": _not_before()},
                    )

        await self._run(work)
        self._revoked_here()
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

    async def keys(
        self, username: str, *, limit: int, offset: int
    ) -> tuple[list[ApiKeyPublic], int]:
        """A page of the keys of `username` that are not revoked (expired ones included),
        oldest first, and how many there are."""
        mine = (
            "FROM api_keys k JOIN users u ON u.id = k.user_id"
            " WHERE u.username = %s AND k.revoked_at IS NULL"
        )
        rows = await self._rows(
            f"SELECT k.id, k.name, k.created_at, k.expires_at {mine}"
            " ORDER BY k.created_at, k.id LIMIT %s OFFSET %s",
            [username, limit, offset],
        )
        total = await self._rows(f"SELECT count(*) AS n {mine}", [username])
        return [ApiKeyPublic.model_validate(row) for row in rows], int(total[0]["n"])

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
        self._revoked_here()

    async def claims_for_key(self, key: str) -> Claims | None:
        """The claims of the key's user, or None for an unknown, expired or revoked key
        (or a disabled user). Not cached here: the verifier remembers answers for a few
        seconds and checks them against the revocation list; key ids found unknown are
        remembered for JWT_API_KEY_NEGATIVE_CACHE_SECONDS, so that a flood of one made-up
        key costs one query."""
        parts = parse_key(key)
        if parts is None:
            return None
        now = time.monotonic()
        if self._unknown_keys.get(parts.key_id, -math.inf) > now:
            return None
        self.metrics.api_key_queries.inc()
        read_at = int(time.time())
        rows = await self._rows(
            "SELECT k.secret_sha256, k.expires_at, a.username, a.role, a.teams, a.not_before"
            f" FROM api_keys k JOIN ({_USERS}) a ON a.id = k.user_id"
            " WHERE k.id = %s AND k.revoked_at IS NULL AND NOT a.disabled"
            " AND (k.expires_at IS NULL OR k.expires_at > now())",
            [parts.key_id],
        )
        if not rows:
            self._unknown_keys.pop(parts.key_id, None)
            if len(self._unknown_keys) >= KEYS_KEPT:
                self._unknown_keys.pop(next(iter(self._unknown_keys)))  # the oldest goes
            negative = self._settings.tokens.api_key_negative_cache_seconds
            self._unknown_keys[parts.key_id] = now + negative
            return None
        row = rows[0]
        if not secret_matches(parts, bytes(row["secret_sha256"])):
            return None
        issued_at = _issued_at(row["not_before"], read_at)
        expires_at: dt.datetime | None = row["expires_at"]
        # Like a token issued now, unless the key expires sooner.
        expiry = issued_at + int(self._settings.tokens.expiry_seconds)
        if expires_at is not None:
            expiry = min(expiry, int(expires_at.timestamp()))
        tokens = self._settings.tokens
        return Claims(
            sub=row["username"],
            roles=[row["role"]],
            teams=list(row["teams"]),
            iss=tokens.issuer,
            aud=tokens.audience,
            iat=issued_at,
            exp=expiry,
            jti=f"{KEY_JTI_PREFIX}{parts.key_id}",
        )


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
