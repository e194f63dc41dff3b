"""Download jobs and model records in PostgreSQL.

Workers of any number of replicas claim jobs with `FOR UPDATE SKIP LOCKED` and hold
them under a lease they renew with every progress report. Every write a worker makes
is fenced by (claimed_by, attempts): a worker that lost its job (its lease ran out and
another took over, or the job was cancelled) changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from modelserve.common.database import (
    Params,
    connection,
    fetch_all,
    fetch_one,
    listen,
    open_pool,
)
from modelserve.download import migrations
from modelserve.download.sources import Source, printable, source_uri
from modelserve.download.tables import (
    ACTIVE,
    RETRYABLE,
    RUNNING,
    Download,
    Kind,
    ModelRecord,
    State,
)

CHANNEL = "modelserve_downloads"
T = TypeVar("T")
logger = logging.getLogger(__name__)


# A job queued again (a new request for a failed model, or a retry): nothing of the last
# attempt is left in it but its source.
_REQUEUE = """state = 'queued', error_code = NULL, error = NULL, bytes_done = 0,
    files_done = 0, rate = NULL, claimed_by = NULL, lease_until = NULL,
    started_at = NULL, finished_at = NULL, updated_at = now()"""


async def notify_workers(cur: psycopg.AsyncCursor[Any], model_id: str) -> None:
    """Wake the workers of every replica: a job is queued."""
    await cur.execute("SELECT pg_notify(%s, %s)", [CHANNEL, model_id])


class ModelIdTaken(RuntimeError):
    """A request names the model id of another user's download of another source."""

    def __init__(self, model_id: str) -> None:
        super().__init__(f"model id {model_id} is taken by the download of another source")
        self.model_id = model_id


def _states(states: tuple[State, ...]) -> list[str]:
    return [state.value for state in states]


def visible_condition(model_id: str) -> str:
    """A condition: the model (whose id is the column `model_id`) is visible to the
    parameter `who`: everyone's when it is NULL (admins, services), else whoever queued
    its current attempt or ever asked for it."""
    return f"""(%(who)s::text IS NULL
        OR EXISTS (SELECT 1 FROM downloads d
                   WHERE d.model_id = {model_id} AND d.requested_by = %(who)s)
        OR EXISTS (SELECT 1 FROM download_requesters r
                   WHERE r.model_id = {model_id} AND r.subject = %(who)s))"""


# A user (`who`) may add a version to a model name when every version it has is one they
# registered themselves: a downloaded version makes a name the platform's, and another
# user's version makes it theirs. Admins and services (`who` NULL) may add to any name.
NAME_TAKEN = """EXISTS (SELECT 1 FROM models m WHERE m.name = %(name)s
    AND %(who)s::text IS NOT NULL
    AND NOT (m.origin = 'register' AND m.requested_by = %(who)s))"""
# A user's download may go under a name that is new, the platform's (downloaded versions
# only) or theirs, never under a name another user registered versions to: it would lock
# them out of their own name, and of its set_active.
DOWNLOAD_NAME_TAKEN = """EXISTS (SELECT 1 FROM models m WHERE m.name = %(name)s
    AND %(who)s::text IS NOT NULL
    AND m.origin = 'register' AND m.requested_by <> %(who)s)"""


def name_taken(kind: Kind) -> str:
    """Whether the name is not open to a user (`who`), for a job of `kind` (SQL)."""
    return DOWNLOAD_NAME_TAKEN if kind == Kind.DOWNLOAD else NAME_TAKEN


class NameTaken(PermissionError):
    """A user's registration names a model name that is not theirs to add versions to."""


async def lock_name(cur: psycopg.AsyncCursor[Any], name: str) -> None:
    """Serialise, until the transaction ends, the changes of one model name: setting its
    active version, and a user's claim of it by a new version."""
    await cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"modelserve-active:{name}"])


class Jobs:
    def __init__(self, url: str, pool: AsyncConnectionPool) -> None:
        self._url = url
        self._pool = pool

    @classmethod
    async def open(cls, url: str, size: int, *, migrate: bool = True) -> Jobs:
        """The jobs on `url`; with `migrate`, the schema first brought to the newest
        revision (off the event loop: Alembic is synchronous)."""
        if migrate:
            await asyncio.to_thread(migrations.upgrade, url)
        return cls(url, await open_pool(url, size=size, wait=5.0))

    async def close(self) -> None:
        await self._pool.close()

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connections, shared with the registry's tables (`registry`, `versions`)."""
        return self._pool

    async def _run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        async with connection(self._pool) as conn:
            return await work(conn)

    async def _one(self, query: str, params: Params) -> dict[str, Any] | None:
        return await fetch_one(self._pool, query, params)

    async def _all(self, query: str, params: Params) -> list[dict[str, Any]]:
        return await fetch_all(self._pool, query, params)

    # --- what clients ask -----------------------------------------------------------------

    async def submit(
        self,
        model_id: str,
        source: Source,
        *,
        name: str | None,
        sha256: str | None,
        requested_by: str,
        privileged: bool = False,
    ) -> tuple[Download, bool]:
        """Queue a download of `model_id`, or return the one that is queued, running or
        ready already, and count the caller among those who asked for it. The flag says
        whether this call queued it. ModelIdTaken when the job of `model_id` copies another
        source and is not the caller's (unless `privileged`: admins and services)."""

        def check(row: dict[str, Any] | None) -> None:
            if row is None or privileged or row["requested_by"] == requested_by:
                return
            if source_uri(row["source_bucket"], row["source_key"], row["source_prefix"]) != (
                source.uri
            ):
                raise ModelIdTaken(model_id)

        params = {
            "model_id": model_id,
            "bucket": source.bucket,
            "key": source.key,
            "prefix": source.prefix,
            "name": name,
            "sha256": sha256,
            "requested_by": requested_by,
            # A user's: the name the model is recorded under is checked for them when it
            # is known (from the file, if not given) and under its lock when recorded.
            "checked": None if privileged else requested_by,
            "finished": _states(RETRYABLE),
        }

        async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[Download, bool]:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                select = "SELECT * FROM downloads WHERE model_id = %s FOR UPDATE"
                await cur.execute(select, [model_id])
                check(await cur.fetchone())
                # A failed or cancelled job is queued again; any other is left as it is.
                await cur.execute(
                    f"""
                    INSERT INTO downloads (model_id, source_bucket, source_key, source_prefix,
                                           name, expected_sha256, state, requested_by,
                                           name_checked_for)
                    VALUES (%(model_id)s, %(bucket)s, %(key)s, %(prefix)s, %(name)s,
                            %(sha256)s, 'queued', %(requested_by)s, %(checked)s)
                    ON CONFLICT (model_id) DO UPDATE SET
                        source_bucket = excluded.source_bucket,
                        source_key = excluded.source_key,
                        source_prefix = excluded.source_prefix,
                        name = excluded.name,
                        expected_sha256 = excluded.expected_sha256,
                        requested_by = excluded.requested_by,
                        kind = 'download', tags = NULL, source_label = NULL,
                        name_checked_for = excluded.name_checked_for, created_at = now(),
                        {_REQUEUE}
                    WHERE downloads.state = ANY(%(finished)s)
                    RETURNING *
                    """,
                    params,
                )
                row = await cur.fetchone()
                queued = row is not None
                if row is None:
                    # Left as it was (or inserted meanwhile by another request: checked again).
                    await cur.execute(select, [model_id])
                    row = await cur.fetchone()
                    check(row)
                await cur.execute(
                    "INSERT INTO download_requesters (model_id, subject) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    [model_id, requested_by],
                )
                if queued:
                    await notify_workers(cur, model_id)
                return Download.model_validate(row), queued

        return await self._run(work)

    async def refuse(
        self,
        model_id: str,
        *,
        bucket: str,
        key: str | None,
        prefix: str | None,
        name: str | None,
        code: str,
        message: str,
        requested_by: str,
        privileged: bool = False,
    ) -> bool:
        """Record a request that can never succeed as a failed job, with its reason; a job
        of the same model that is queued, running or ready is left as it is, and so is
        another user's (unless `privileged`). Whether it was recorded."""
        params = {
            "model_id": model_id,
            "bucket": printable(bucket),
            "key": printable(key),
            "prefix": printable(prefix),
            "name": printable(name),
            "code": code,
            "message": printable(message),
            "requested_by": requested_by,
            "finished": _states(RETRYABLE),
            "privileged": privileged,
            # Retried later, it is still a user's download (`submit`).
            "checked": None if privileged else requested_by,
        }
        recorded = await self._one(
            """
            INSERT INTO downloads (model_id, source_bucket, source_key, source_prefix, name,
                                   state, error_code, error, requested_by, finished_at,
                                   name_checked_for)
            VALUES (%(model_id)s, %(bucket)s, %(key)s, %(prefix)s, %(name)s, 'failed',
                    %(code)s, %(message)s, %(requested_by)s, now(), %(checked)s)
            ON CONFLICT (model_id) DO UPDATE SET
                source_bucket = excluded.source_bucket,
                source_key = excluded.source_key,
                source_prefix = excluded.source_prefix,
                name = excluded.name,
                state = 'failed', error_code = excluded.error_code, error = excluded.error,
                requested_by = excluded.requested_by, kind = 'download', tags = NULL,
                source_label = NULL, name_checked_for = excluded.name_checked_for,
                bytes_done = 0, files_done = 0,
                rate = NULL, created_at = now(), updated_at = now(), finished_at = now()
            WHERE downloads.state = ANY(%(finished)s)
              AND (%(privileged)s OR downloads.requested_by = %(requested_by)s)
            RETURNING model_id
            """,
            params,
        )
        return recorded is not None

    async def get(self, model_id: str, *, visible_to: str | None = None) -> Download | None:
        """The job of `model_id`; with `visible_to`, only if that subject may see it."""
        row = await self._one(
            f"SELECT * FROM downloads WHERE model_id = %(id)s AND {visible_condition('%(id)s')}",
            {"id": model_id, "who": visible_to},
        )
        return Download.model_validate(row) if row else None

    async def recent(
        self,
        *,
        state: State | None = None,
        visible_to: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Download], int]:
        """A page of the jobs `visible_to` may see, newest first, and how many there are."""
        where = f"""(%(state)s::text IS NULL OR state = %(state)s)
              AND {visible_condition("downloads.model_id")}"""
        params = {
            "state": state.value if state else None,
            "who": visible_to,
            "limit": limit,
            "offset": offset,
        }
        rows = await self._all(
            f"SELECT * FROM downloads WHERE {where}"
            " ORDER BY created_at DESC, model_id LIMIT %(limit)s OFFSET %(offset)s",
            params,
        )
        counted = await self._one(f"SELECT count(*) AS n FROM downloads WHERE {where}", params)
        return [Download.model_validate(row) for row in rows], int(counted["n"] if counted else 0)

    async def cancel(self, model_id: str) -> Download | None:
        """Cancel a queued or running job (its worker notices at its next report)."""
        row = await self._one(
            """
            UPDATE downloads SET state = 'cancelled', error_code = 'cancelled',
                error = 'cancelled on request', finished_at = now(), updated_at = now()
            WHERE model_id = %s AND state = ANY(%s) RETURNING *
            """,
            [model_id, _states(ACTIVE)],
        )
        return Download.model_validate(row) if row else None

    async def retry(self, model_id: str) -> Download | None:
        """Queue a failed or cancelled job again."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> Download | None:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    f"""
                    UPDATE downloads SET {_REQUEUE}
                    WHERE model_id = %s AND state = ANY(%s) RETURNING *
                    """,
                    [model_id, _states(RETRYABLE)],
                )
                row = await cur.fetchone()
                if row is not None:
                    await notify_workers(cur, model_id)
                return Download.model_validate(row) if row else None

        return await self._run(work)

    async def models(self, *, visible_to: str | None = None) -> list[ModelRecord]:
        """Ready records; with `visible_to`, those of the models that subject may see."""
        rows = await self._all(
            f"""
            SELECT * FROM models WHERE state = 'ready' AND {visible_condition("models.id")}
            ORDER BY name, id
            """,
            {"who": visible_to},
        )
        return [ModelRecord.model_validate(row) for row in rows]

    async def model(self, model_id: str, *, visible_to: str | None = None) -> ModelRecord | None:
        row = await self._one(
            f"SELECT * FROM models WHERE id = %(id)s AND {visible_condition('%(id)s')}",
            {"id": model_id, "who": visible_to},
        )
        return ModelRecord.model_validate(row) if row else None

    # --- what workers do ------------------------------------------------------------------

    async def release_own(self, worker: str) -> int:
        """At start-up: give up the jobs this worker held before a restart, so that they
        are taken over now rather than when their lease runs out."""
        rows = await self._all(
            """
            UPDATE downloads SET lease_until = now() - interval '1 second', updated_at = now()
            WHERE claimed_by = %s AND state = ANY(%s) RETURNING model_id
            """,
            [worker, _states(RUNNING)],
        )
        return len(rows)

    async def claim(self, worker: str, lease: float) -> Download | None:
        """The oldest queued job, or one whose worker died (its lease ran out)."""
        row = await self._one(
            """
            UPDATE downloads SET state = 'transferring', attempts = attempts + 1,
                claimed_by = %(worker)s, lease_until = now() + make_interval(secs => %(lease)s),
                bytes_done = 0, files_done = 0, rate = NULL,
                started_at = now(), updated_at = now()
            WHERE model_id = (
                SELECT model_id FROM downloads
                WHERE state = 'queued' OR (state = ANY(%(running)s) AND lease_until < now())
                ORDER BY created_at
                FOR UPDATE SKIP LOCKED
                LIMIT 1
            )
            RETURNING *
            """,
            {"worker": worker, "lease": lease, "running": _states(RUNNING)},
        )
        return Download.model_validate(row) if row else None

    async def report(
        self,
        job: Download,
        lease: float,
        *,
        state: State | None = None,
        bytes_done: int | None = None,
        bytes_total: int | None = None,
        files_done: int | None = None,
        files_total: int | None = None,
        rate: float | None = None,
    ) -> bool:
        """Progress, and the lease renewed; False when the job is no longer this worker's
        (cancelled, or taken over)."""
        row = await self._one(
            """
            UPDATE downloads SET
                state = coalesce(%(state)s, state),
                bytes_done = coalesce(%(bytes_done)s, bytes_done),
                bytes_total = coalesce(%(bytes_total)s, bytes_total),
                files_done = coalesce(%(files_done)s, files_done),
                files_total = coalesce(%(files_total)s, files_total),
                rate = coalesce(%(rate)s, rate),
                lease_until = now() + make_interval(secs => %(lease)s),
                updated_at = now()
            WHERE model_id = %(model_id)s AND claimed_by = %(worker)s
              AND attempts = %(attempts)s AND state = ANY(%(running)s)
            RETURNING model_id
            """,
            {
                "state": state.value if state else None,
                "bytes_done": bytes_done,
                "bytes_total": bytes_total,
                "files_done": files_done,
                "files_total": files_total,
                "rate": rate,
                "lease": lease,
                "model_id": job.model_id,
                "worker": job.claimed_by,
                "attempts": job.attempts,
                "running": _states(RUNNING),
            },
        )
        return row is not None

    async def fail(self, job: Download, code: str, message: str) -> bool:
        row = await self._one(
            """
            UPDATE downloads SET state = 'failed', error_code = %s, error = %s,
                finished_at = now(), updated_at = now(), lease_until = NULL
            WHERE model_id = %s AND claimed_by = %s AND attempts = %s AND state = ANY(%s)
            RETURNING model_id
            """,
            [code, message, job.model_id, job.claimed_by, job.attempts, _states(RUNNING)],
        )
        return row is not None

    async def finish(self, job: Download, record: ModelRecord) -> bool:
        """Mark the job ready and write its model record, both or neither. A user's job
        (`name_checked_for`) checks that the name is open to them under the name's lock,
        so two users cannot both claim a new name; NameTaken otherwise."""
        values = record.model_dump(exclude={"created_at", "updated_at"})
        values["files"] = Jsonb(values["files"])
        values["tags"] = Jsonb(values["tags"])
        columns = list(values)

        async def work(conn: psycopg.AsyncConnection[Any]) -> bool:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                if job.name_checked_for is not None:
                    await lock_name(cur, record.name)
                    await cur.execute(
                        f"SELECT {name_taken(job.kind)} AS taken",
                        {"name": record.name, "who": job.name_checked_for},
                    )
                    taken = await cur.fetchone()
                    if taken is not None and taken["taken"]:
                        raise NameTaken(record.name)
                await cur.execute(
                    """
                    UPDATE downloads SET state = 'ready', finished_at = now(), updated_at = now(),
                        lease_until = NULL, bytes_done = coalesce(bytes_total, bytes_done),
                        files_done = coalesce(files_total, files_done)
                    WHERE model_id = %s AND claimed_by = %s AND attempts = %s
                      AND state = ANY(%s)
                    """,
                    [job.model_id, job.claimed_by, job.attempts, _states(RUNNING)],
                )
                if cur.rowcount != 1:
                    return False
                await cur.execute(
                    f"INSERT INTO models ({', '.join(columns)})"
                    f" VALUES ({', '.join(f'%({c})s' for c in columns)})"
                    " ON CONFLICT (id) DO UPDATE SET "
                    + ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
                    + ", updated_at = now()",
                    values,
                )
                return True

        return await self._run(work)

    async def listen(self, wake: asyncio.Event) -> None:
        """Set `wake` whenever a job is queued, by any replica (and after every
        reconnection: what was sent meanwhile is lost); runs until cancelled."""

        async def notified(_: str | None) -> None:
            wake.set()

        await listen(self._url, CHANNEL, notified, what="job notifications")
