"""Everything the contract service keeps in PostgreSQL, behind one class.

Decisions that count (servers, rates, budgets) are settled inside PostgreSQL, under its
row and advisory locks, so that any number of service replicas agree: nothing is counted
in a replica's memory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from modelserve.common.database import (
    connection,
    fetch_all,
    fetch_one,
    listen,
    open_pool,
)
from modelserve.contract import migrations
from modelserve.contract.policy import (
    CounterCharge,
    Decision,
    Reason,
    Resource,
    Scope,
    check_totals,
    deny,
    replica_gpus,
)
from modelserve.contract.tables import (
    Contract,
    Limits,
    Server,
    SubjectKind,
)

CHANNEL = "modelserve_contracts"
T = TypeVar("T")
OVER_LIMIT = "MS001"  # raised by contract_reserve; see migrations/functions_0_1_0.sql
# How long the id of a recorded usage is remembered, so that a sender's retry of it is
# not counted again (the gateway retries an unsure delivery within minutes or hours); and
# how long a reservation charged at its expiry waits for a late usage record to correct it.
RECEIPT_DAYS = 7
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """Whose inference request a reservation holds tokens for."""

    subject: str
    team: str | None
    model: str


class CounterEntry(TypedDict):
    """One counter a usage record adds to: with a lease, that lease is settled (`hold`
    leaves its reservation); without one (or one not found), the record's request or
    tokens count in the current window. A `fallback` entry counts only when the record's
    reservation is not found. JSON-ready, as UsageRow."""

    scope: str
    metric: str  # requests/minute, tokens/minute, tokens/day or tokens/month
    lease: str | None
    hold: int
    fallback: bool


class UsageRow(TypedDict):
    """One usage record as record_usages takes it. JSON-ready: ids as their 32 hex digits
    (UUID.hex, which PostgreSQL reads as a uuid: a third of the CPU of str()), None where
    there is none."""

    id: str | None
    subject: str
    team: str | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    reservation: str | None
    counters: list[CounterEntry]


# contract_record_usage's 13 arrays come as one jsonb parameter, an object of arrays
# (usage_batch), and jsonb_to_record makes them PostgreSQL arrays, element by element, in
# order, JSON null as NULL: 7 arrays of the records, 6 of their counter entries (`records`:
# the 1-based position of the entry's record). Passed as 13 Python lists instead, they
# cost psycopg ~40 µs of the service's CPU a record to write as array text; this costs
# json.dumps and PostgreSQL a few.
_RECORD_USAGE = """
SELECT u.r_duplicate, u.r_found
FROM jsonb_to_record(%s::jsonb) AS b(
    ids uuid[], subjects text[], teams text[], models text[], prompt_tokens bigint[],
    completion_tokens bigint[], reservations uuid[],
    records integer[], scopes text[], metrics text[], leases uuid[], holds bigint[],
    fallback boolean[]
), contract_record_usage(
    b.ids, b.subjects, b.teams, b.models, b.prompt_tokens, b.completion_tokens,
    b.reservations, b.records, b.scopes, b.metrics, b.leases, b.holds, b.fallback
) AS u
ORDER BY u.r_ord
"""


def unleased(charges: Iterable[CounterCharge], fallback: bool) -> list[CounterEntry]:
    """The entries of counters a record was charged to without a lease (the shape of POST
    /decide): they count in the current windows, `fallback` ones only when the record's
    reservation is not found."""
    return [
        {"scope": c.scope, "metric": c.metric, "lease": None, "hold": 0, "fallback": fallback}
        for c in charges
    ]


def usage_batch(records: Sequence[UsageRow]) -> str:
    """The JSON of _RECORD_USAGE's one parameter for `records`: an object of arrays."""
    entries = [(i, entry) for i, record in enumerate(records, 1) for entry in record["counters"]]
    arrays = {
        "ids": [r["id"] for r in records],
        "subjects": [r["subject"] for r in records],
        "teams": [r["team"] for r in records],
        "models": [r["model"] for r in records],
        "prompt_tokens": [r["prompt_tokens"] for r in records],
        "completion_tokens": [r["completion_tokens"] for r in records],
        "reservations": [r["reservation"] for r in records],
        "records": [i for i, _ in entries],
        "scopes": [e["scope"] for _, e in entries],
        "metrics": [e["metric"] for _, e in entries],
        "leases": [e["lease"] for _, e in entries],
        "holds": [e["hold"] for _, e in entries],
        "fallback": [e["fallback"] for _, e in entries],
    }
    return json.dumps(arrays, separators=(",", ":"))


@dataclass(frozen=True)
class LeaseWant:
    """A slice asked of one limited counter, in the current window of `unit`."""

    scope: str
    metric: str
    unit: str
    amount: int
    limit: int | None


@dataclass(frozen=True)
class LeaseGrant:
    lease: uuid.UUID | None  # None: nothing granted, no lease made
    granted: int
    window_ends_in: float  # seconds from the database's now to the end of the window


async def _reserve(
    conn: psycopg.AsyncConnection[Any],
    charges: Sequence[CounterCharge],
    reservation: uuid.UUID | None,
    ttl: float,
    request: Request | None = None,
) -> None:
    """contract_reserve (migrations/functions_0_1_0.sql) for `charges`; over a limit it
    raises OVER_LIMIT. A reservation records `request`: whose usage it is, should it be
    charged at expiry."""
    await conn.execute(
        "SELECT contract_reserve(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            [c.scope for c in charges],
            [c.metric for c in charges],
            [c.unit for c in charges],
            [c.used for c in charges],
            [c.reserved for c in charges],
            [c.limit for c in charges],
            reservation,
            ttl,
            request.subject if request else None,
            request.team if request else None,
            request.model if request else None,
        ],
    )


_UPSERT_SEEN = (
    "INSERT INTO servers (namespace, name, owner, team, replicas, gpus, model, runtime,"
    " confirmed, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, true, now())"
    # A ModelServe from before owner labels were stamped keeps the owner the ledger has.
    " ON CONFLICT (namespace, name) DO UPDATE SET"
    " owner = coalesce(nullif(excluded.owner, ''), servers.owner),"
    " team = CASE WHEN excluded.owner = '' THEN coalesce(nullif(excluded.team, ''),"
    " servers.team) ELSE excluded.team END, replicas = excluded.replicas, gpus = excluded.gpus,"
    " model = excluded.model, runtime = excluded.runtime, confirmed = true, updated_at = now()"
)


def _seen_values(server: Server) -> list[Any]:
    return [
        server.namespace,
        server.name,
        server.owner,
        server.team,
        server.replicas,
        server.gpus,
        server.model,
        server.runtime,
    ]


class Store:
    def __init__(self, url: str, pool: AsyncConnectionPool) -> None:
        self._url = url
        self._pool = pool

    @property
    def pool(self) -> AsyncConnectionPool:
        """For the readiness check's `SELECT 1`."""
        return self._pool

    @classmethod
    async def open(cls, url: str, size: int, wait: float, *, migrate: bool = True) -> Store:
        """The store on `url`; with `migrate`, its schema first brought to the newest
        revision (off the event loop: Alembic is synchronous)."""
        if migrate:
            await asyncio.to_thread(migrations.upgrade, url)
        return cls(url, await open_pool(url, size=size, wait=wait, min_size=2))

    async def close(self) -> None:
        await self._pool.close()

    async def _run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """`work` on a pooled connection; an unreachable database is DatabaseUnavailable."""
        async with connection(self._pool) as conn:
            return await work(conn)

    # --- contracts ------------------------------------------------------------------------

    async def contract(self, kind: SubjectKind, name: str) -> Contract | None:
        row = await fetch_one(
            self._pool, "SELECT * FROM contracts WHERE kind = %s AND name = %s", [kind.value, name]
        )
        return Contract.model_validate(row) if row else None

    async def contracts(self) -> list[Contract]:
        rows = await fetch_all(self._pool, "SELECT * FROM contracts ORDER BY kind, name", [])
        return [Contract.model_validate(row) for row in rows]

    async def put_contract(self, kind: SubjectKind, name: str, limits: Limits) -> Contract:
        """Create or replace the contract of `kind` `name`; every replica hears of it."""
        values = limits.model_dump()
        columns = list(values)

        async def work(conn: psycopg.AsyncConnection[Any]) -> Contract:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    f"INSERT INTO contracts (kind, name, {', '.join(columns)}, updated_at)"
                    f" VALUES (%(kind)s, %(name)s, {', '.join(f'%({c})s' for c in columns)}, now())"
                    " ON CONFLICT (kind, name) DO UPDATE SET "
                    + ", ".join(f"{c} = excluded.{c}" for c in [*columns, "updated_at"])
                    + " RETURNING *",
                    {"kind": kind.value, "name": name, **values},
                )
                row = await cur.fetchone()
                await cur.execute("SELECT pg_notify(%s, %s)", [CHANNEL, f"{kind}/{name}"])
            return Contract.model_validate(row)

        return await self._run(work)

    async def delete_contract(self, kind: SubjectKind, name: str) -> bool:
        async def work(conn: psycopg.AsyncConnection[Any]) -> bool:
            async with conn.transaction():
                cur = await conn.execute(
                    "DELETE FROM contracts WHERE kind = %s AND name = %s", [kind.value, name]
                )
                await conn.execute("SELECT pg_notify(%s, %s)", [CHANNEL, f"{kind}/{name}"])
                return cur.rowcount > 0

        return await self._run(work)

    async def listen(self, changed: Callable[[str | None], Awaitable[None]]) -> None:
        """Call `changed("kind/name")` whenever any replica changes that contract, and
        `changed(None)` after every (re)connection. Runs until cancelled."""
        await listen(self._url, CHANNEL, changed, what="contract changes")

    # --- counters -------------------------------------------------------------------------

    async def charge(
        self,
        charges: Sequence[CounterCharge],
        reservation: uuid.UUID | None,
        ttl: float,
        *,
        keep: bool = True,
        request: Request | None = None,
    ) -> CounterCharge | None:
        """Count and reserve every charge, or none of them: returns the charge that would go
        over its limit (nothing counted then), or None when all fit. One call. Without
        `keep` (a dry run) nothing is counted either way. The reservation names `request`,
        whose usage it becomes if nobody settles it in time."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> CounterCharge | None:
            try:
                async with conn.transaction():
                    await _reserve(conn, charges, reservation, ttl, request)
                    if not keep:
                        raise psycopg.Rollback()
            except psycopg.Error as error:
                if error.sqlstate != OVER_LIMIT:
                    raise
                return charges[int(error.diag.message_primary or "1") - 1]
            return None

        return await self._run(work)

    async def record_usage(
        self,
        *,
        reservation: uuid.UUID | None,
        charges: Sequence[CounterCharge],
        subject: str,
        team: str | None,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        usage_id: uuid.UUID | None = None,
    ) -> bool | None:
        """One usage record of the shape of POST /decide (record_usages): the reservation
        settled with the tokens really used (or, when it is unknown, the tokens counted in
        `charges`' windows). Returns whether the reservation was found; None, counting
        nothing, when a usage of this `usage_id` was recorded before."""
        record: UsageRow = {
            "id": None if usage_id is None else usage_id.hex,
            "subject": subject,
            "team": team,
            "model": model,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "reservation": None if reservation is None else reservation.hex,
            "counters": unleased(charges, fallback=reservation is not None),
        }
        ((duplicate, found),) = await self.record_usages([record])
        return None if duplicate else found

    async def record_usages(self, records: Sequence[UsageRow]) -> list[tuple[bool, bool]]:
        """Record every usage record in one transaction, in one call of
        contract_record_usage (migrations/functions_0002_leases.sql; set-based, whatever
        the number of records), the records passed as one jsonb parameter (usage_batch):
        per record, (duplicate, reservation found), in order.

        A record whose id was recorded before, or comes earlier in `records`, counts nothing.
        Its reservation (the shape of POST /decide) is settled with the tokens really used;
        one charged at its expiry was counted then, as one request of its reserved tokens,
        and is corrected to these tokens, in its windows and in the usage of the day it was
        charged, without a second request. Its counter entries settle their leases, or
        count in the current windows without limit (`fallback` ones only when the
        reservation is not found: its tokens count all the same)."""
        batch = usage_batch(records)

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[tuple[bool, bool]]:
            cur = await conn.execute(_RECORD_USAGE, [batch])
            return [(bool(row[0]), bool(row[1])) for row in await cur.fetchall()]

        return await self._run(work)

    # --- leases ---------------------------------------------------------------------------

    async def limits_of(
        self, subject: str, team: str | None
    ) -> tuple[Limits | None, Limits | None]:
        """The user's own contract and the team's (None: none), as PostgreSQL has them now:
        one query, never the replica's in-memory copy."""
        rows = await fetch_all(
            self._pool,
            "SELECT * FROM contracts WHERE (kind = 'user' AND name = %s)"
            " OR (kind = 'team' AND name = %s)",
            [subject, team],
        )
        own: dict[str, Limits] = {}
        for row in rows:
            contract = Contract.model_validate(row)
            own[contract.kind] = Limits.model_validate(
                contract.model_dump(include=set(Limits.model_fields))
            )
        return own.get(SubjectKind.USER), own.get(SubjectKind.TEAM)

    async def lease(
        self,
        holder: str,
        *,
        give_back: Sequence[tuple[uuid.UUID, int]],
        renew: Sequence[uuid.UUID],
        wants: Sequence[LeaseWant],
        ttl: float,
        keep: float,
    ) -> tuple[list[LeaseGrant], list[uuid.UUID]]:
        """One call of contract_leases, one transaction: `give_back` (lease, taken), then
        `renew` (for `ttl` seconds), then the grants, each at most its want and what its
        limit leaves. Returns a grant per want, in order, and the leases renewed."""

        async def work(
            conn: psycopg.AsyncConnection[Any],
        ) -> tuple[list[LeaseGrant], list[uuid.UUID]]:
            cur = await conn.execute(
                "SELECT r_ord, r_lease, r_granted, r_window_ends_in FROM contract_leases("
                "%s, %s::uuid[], %s::bigint[], %s::uuid[], %s::text[], %s::text[], %s::text[],"
                " %s::bigint[], %s::bigint[], %s, %s)",
                [
                    holder,
                    [lease for lease, _ in give_back],
                    [taken for _, taken in give_back],
                    list(renew),
                    [w.scope for w in wants],
                    [w.metric for w in wants],
                    [w.unit for w in wants],
                    [w.amount for w in wants],
                    [w.limit for w in wants],
                    ttl,
                    keep,
                ],
            )
            grants: dict[int, LeaseGrant] = {}
            renewed: list[uuid.UUID] = []
            for ordinal, lease, granted, ends_in in await cur.fetchall():
                if ordinal is None:
                    renewed.append(lease)
                else:
                    grants[ordinal] = LeaseGrant(lease, int(granted), float(ends_in))
            return [grants[i] for i in range(1, len(wants) + 1)], renewed

        return await self._run(work)

    async def charge_expired(self) -> int:
        """Charge the reservations that expired unsettled (contract_charge_expired) and the
        leases that expired not given back or not fully settled (contract_charge_leases);
        delete the charged ones older than RECEIPT_DAYS, and usage receipts as old. How
        many were charged, reservations and leases together.

        Two transactions, not one: each takes its rows (reservations, or leases) before
        the counter rows, as every other writer does; one transaction holding the counter
        rows of the first while it locks the rows of the second could deadlock with a
        usage batch."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            charged = 0
            for function in ("contract_charge_expired", "contract_charge_leases"):
                cur = await conn.execute(f"SELECT {function}(%s)", [RECEIPT_DAYS * 86400.0])
                row = await cur.fetchone()
                charged += int(row[0]) if row else 0
            await conn.execute(
                "DELETE FROM usage_receipts WHERE recorded_at < now() - make_interval(days => %s)",
                [RECEIPT_DAYS],
            )
            return charged

        return await self._run(work)

    async def usage(
        self, *, subject: str | None, team: str | None, since: dt.date
    ) -> list[dict[str, Any]]:
        """Totals per model since `since` (a UTC day), for one user or one team."""
        column, value = ("subject", subject) if subject is not None else ("team", team)
        return await fetch_all(
            self._pool,
            "SELECT model, sum(requests)::bigint AS requests,"
            " sum(prompt_tokens)::bigint AS prompt_tokens,"
            " sum(completion_tokens)::bigint AS completion_tokens"
            f" FROM usage WHERE {column} = %s AND day >= %s GROUP BY model ORDER BY model",
            [value, since],
        )

    async def daily_usage(
        self, *, subject: str | None, team: str | None, days: int
    ) -> list[dict[str, Any]]:
        """Totals per UTC day, the last `days` days up to today, for one user or one team:
        one row a day, oldest first, zeros for days without use. One query."""
        column, value = ("subject", subject) if subject is not None else ("team", team)
        return await fetch_all(
            self._pool,
            "WITH today AS (SELECT (now() AT TIME ZONE 'UTC')::date AS day)"
            " SELECT d.day::date AS day, coalesce(sum(u.requests), 0)::bigint AS requests,"
            " coalesce(sum(u.prompt_tokens), 0)::bigint AS prompt_tokens,"
            " coalesce(sum(u.completion_tokens), 0)::bigint AS completion_tokens"
            " FROM today, generate_series(today.day - (%s::int - 1), today.day, interval '1 day')"
            " AS d(day)"
            f" LEFT JOIN usage u ON u.day = d.day::date AND u.{column} = %s"
            " GROUP BY d.day ORDER BY d.day",
            [days, value],
        )

    async def today(self) -> dt.date:
        async def work(conn: psycopg.AsyncConnection[Any]) -> dt.date:
            cur = await conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date")
            row = await cur.fetchone()
            assert row is not None
            return row[0]  # type: ignore[no-any-return]

        return await self._run(work)

    # --- the server ledger ----------------------------------------------------------------

    async def claim_server(
        self,
        scopes: Sequence[Scope],
        resource: Resource,
        *,
        owner: str,
        team: str | None,
        record: bool,
        limited: bool = True,
        any_owner: bool = False,
    ) -> Decision | None:
        """Whether the server `resource` fits next to what each scope already runs; if so
        (and `record`), it is written into the ledger in the same transaction. Decisions for
        the same user or team wait for each other, so two cannot both squeeze under a limit.

        A server the ledger records for someone else is theirs: the decision is `not_owner`
        (unless `any_owner`: a platform admin), and a recorded owner is never replaced here.
        """
        # A dry run may name no server yet (a create with generateName, before a name is
        # generated): it is counted as a new one.
        assert resource.namespace and (resource.name or not record)

        async def work(conn: psycopg.AsyncConnection[Any]) -> Decision | None:
            async with conn.transaction():
                for key in sorted(scope.key for scope in scopes):
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        [f"servers:{key}"],
                    )
                cur = await conn.execute(
                    "SELECT owner FROM servers WHERE namespace = %s AND name = %s FOR UPDATE",
                    [resource.namespace, resource.name],
                )
                row = await cur.fetchone()
                if row is not None and row[0] != owner and not any_owner:
                    whose = f"belongs to {row[0]}" if row[0] else "has no owner"
                    return deny(
                        Reason.NOT_OWNER,
                        f"{resource.namespace}/{resource.name} {whose}: only its owner and "
                        f"platform admins may change it, not {owner}",
                    )
                for scope in scopes if limited else ():
                    kind, _, name = scope.key.partition(":")
                    column = "owner" if kind == SubjectKind.USER else "team"
                    cur = await conn.execute(
                        "SELECT count(*), coalesce(sum(replicas::bigint * gpus), 0) FROM servers"
                        f" WHERE {column} = %s AND NOT (namespace = %s AND name = %s)",
                        [name, resource.namespace, resource.name],
                    )
                    counted = await cur.fetchone()
                    assert counted is not None
                    denial = check_totals(scope, int(counted[0]), int(counted[1]), resource)
                    if denial is not None:
                        return denial
                if record:
                    # Pending (unconfirmed) until the inventory sees the ModelServe; the
                    # owner and team of a recorded server stay as they are.
                    await conn.execute(
                        "INSERT INTO servers (namespace, name, owner, team, replicas, gpus,"
                        " model, runtime, confirmed, updated_at) VALUES (%s, %s, %s, %s, %s,"
                        " %s, %s, %s, false, now()) ON CONFLICT (namespace, name) DO UPDATE SET"
                        " replicas = excluded.replicas, gpus = excluded.gpus,"
                        " model = excluded.model, runtime = excluded.runtime,"
                        " updated_at = now()",
                        [
                            resource.namespace,
                            resource.name,
                            owner,
                            team or "",
                            resource.replicas,
                            # Every GPU of a replica: a group's pods all hold theirs.
                            replica_gpus(resource.gpus, resource.nodes),
                            resource.model or "",
                            resource.runtime or "",
                        ],
                    )
            return None

        return await self._run(work)

    async def server(self, namespace: str, name: str) -> Server | None:
        row = await fetch_one(
            self._pool,
            "SELECT * FROM servers WHERE namespace = %s AND name = %s",
            [namespace, name],
        )
        return Server.model_validate(row) if row else None

    async def remove_server(self, namespace: str, name: str) -> None:
        """The inventory saw the ModelServe go (or start going): it no longer counts."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                "DELETE FROM servers WHERE namespace = %s AND name = %s", [namespace, name]
            )

        await self._run(work)

    async def upsert_server(self, server: Server) -> None:
        """The inventory saw the ModelServe as it is now: recorded as seen, with the owner
        and team of its labels (which the webhook lets nobody but an admin change)."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(_UPSERT_SEEN, _seen_values(server))

        await self._run(work)

    async def delete_old_counters(self, minutes: int = 2) -> int:
        """Per-minute counter rows of windows older than `minutes`: no decision reads them
        again. Day and month windows are kept (usage reports and budgets read them)."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            cur = await conn.execute(
                "DELETE FROM counters WHERE metric LIKE '%%/minute'"
                " AND window_start < now() - make_interval(mins => %s)",
                [minutes],
            )
            return cur.rowcount

        return await self._run(work)

    async def sync_servers(self, running: Sequence[Server], grace: float) -> tuple[int, int]:
        """Make the ledger match the cluster's ModelServes (`running`, as listed just now).

        A listed server is recorded as it is, its owner and team from its labels. Recorded
        servers not listed are dropped once seen before, or once older than `grace`
        seconds (decided on, but never created). Returns (added, dropped).
        """

        async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[int, int]:
            async with conn.transaction():
                await conn.execute("LOCK TABLE servers IN SHARE ROW EXCLUSIVE MODE")
                cur = await conn.execute("SELECT namespace, name FROM servers")
                known = {(row[0], row[1]) for row in await cur.fetchall()}
                listed = {(s.namespace, s.name) for s in running}
                for server in running:
                    await conn.execute(_UPSERT_SEEN, _seen_values(server))
                gone = [key for key in known - listed]
                dropped = 0
                for namespace, name in gone:
                    cur = await conn.execute(
                        "DELETE FROM servers WHERE namespace = %s AND name = %s AND (confirmed"
                        " OR updated_at < now() - make_interval(secs => %s))",
                        [namespace, name, grace],
                    )
                    dropped += cur.rowcount
                return len(listed - known), dropped

        return await self._run(work)
