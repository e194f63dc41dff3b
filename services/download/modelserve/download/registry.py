"""The registry's rows in PostgreSQL: registration jobs, uploads, and model records listed
by name, tag and origin.

A registration is a job of the download engine (`jobs`) whose source is the platform
store: its workers copy, hash, tag and record it as they do a download. It is queued only
for a model id that nothing holds yet, so a version is never overwritten.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from modelserve.common.database import connection, fetch_all, fetch_one
from modelserve.download.jobs import name_taken, notify_workers, visible_condition
from modelserve.download.sources import Source
from modelserve.download.tables import RETRYABLE, Download, Kind, ModelRecord, Upload


class ModelExists(RuntimeError):
    """A registration names a model id that a record or a job already holds."""

    def __init__(self, model_id: str) -> None:
        super().__init__(
            f"model id {model_id} exists already: versions are kept, never overwritten; "
            "register this one under a new id"
        )
        self.model_id = model_id


class UploadUsed(RuntimeError):
    """The upload is not complete, or registered by a registration that has not failed
    nor been cancelled."""


# The records `GET /models` lists: ready, visible to `who`, matching the filters given.
_MATCHING = f"""state = 'ready' AND {visible_condition("models.id")}
    AND (%(name)s::text IS NULL OR name = %(name)s)
    AND (%(origin)s::text IS NULL OR origin = %(origin)s)
    AND tags @> %(tags)s"""


# An upload's registration (`u.registered_as`) ended without a version: its job failed or
# was cancelled, so the upload (still in its staging prefix) may be registered again.
_REGISTRATION_ENDED = """EXISTS (SELECT 1 FROM downloads d WHERE d.model_id = u.registered_as
        AND d.kind = 'register' AND d.state = ANY(%s))
    AND NOT EXISTS (SELECT 1 FROM models m WHERE m.id = u.registered_as)"""


class Registry:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def name_is_open_to(self, name: str, who: str | None, kind: Kind = Kind.REGISTER) -> bool:
        """Whether `who` may add a version to model name `name`: for a registration, it is
        new, or every version of it is one they registered; for a download, no other user
        registered a version of it (any name, for `who` None)."""
        row = await fetch_one(
            self._pool, f"SELECT {name_taken(kind)} AS taken", {"name": name, "who": who}
        )
        return not (row and row["taken"])

    async def register(
        self,
        model_id: str,
        source: Source,
        *,
        name: str | None,
        tags: list[str],
        label: str | None,
        requested_by: str,
        name_checked_for: str | None,
        privileged: bool,
        upload_id: str | None = None,
    ) -> Download:
        """Queue the registration of `source` as model `model_id`. ModelExists when a
        record has that id, or a job that is not a failed or cancelled one of the
        caller's (any, for `privileged` callers). With `upload_id`, that upload is marked
        registered in the same transaction (UploadUsed unless it is complete, or its
        registration failed or was cancelled)."""
        params = {
            "model_id": model_id,
            "bucket": source.bucket,
            "key": source.key,
            "prefix": source.prefix,
            "name": name,
            "tags": Jsonb(tags),
            "label": label,
            "requested_by": requested_by,
            "checked": name_checked_for,
            "finished": [state.value for state in RETRYABLE],
            "privileged": privileged,
        }

        async def work(conn: psycopg.AsyncConnection[Any]) -> Download:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                await cur.execute("SELECT 1 FROM models WHERE id = %s FOR UPDATE", [model_id])
                if await cur.fetchone() is not None:
                    raise ModelExists(model_id)
                if upload_id is not None:
                    # Before the job is queued: a failed or cancelled registration of this
                    # upload (under this id too) gives it back.
                    await cur.execute(
                        f"""
                        UPDATE model_uploads u SET state = 'registered', registered_as = %s
                        WHERE id = %s AND (state = 'complete' OR state = 'registered'
                            AND {_REGISTRATION_ENDED})
                        RETURNING id
                        """,
                        [model_id, upload_id, params["finished"]],
                    )
                    if await cur.fetchone() is None:
                        raise UploadUsed(upload_id)
                await cur.execute(
                    """
                    INSERT INTO downloads (model_id, source_bucket, source_key, source_prefix,
                        name, state, requested_by, kind, tags, source_label, name_checked_for)
                    VALUES (%(model_id)s, %(bucket)s, %(key)s, %(prefix)s, %(name)s, 'queued',
                        %(requested_by)s, 'register', %(tags)s, %(label)s, %(checked)s)
                    ON CONFLICT (model_id) DO UPDATE SET
                        source_bucket = excluded.source_bucket,
                        source_key = excluded.source_key,
                        source_prefix = excluded.source_prefix,
                        name = excluded.name, expected_sha256 = NULL, kind = 'register',
                        tags = excluded.tags, source_label = excluded.source_label,
                        name_checked_for = excluded.name_checked_for,
                        requested_by = excluded.requested_by,
                        state = 'queued', error_code = NULL, error = NULL, bytes_done = 0,
                        bytes_total = NULL, files_done = 0, files_total = NULL, rate = NULL,
                        claimed_by = NULL, lease_until = NULL, started_at = NULL,
                        finished_at = NULL, created_at = now(), updated_at = now()
                    WHERE downloads.state = ANY(%(finished)s)
                      AND (%(privileged)s OR downloads.requested_by = %(requested_by)s)
                    RETURNING *
                    """,
                    params,
                )
                row = await cur.fetchone()
                if row is None:
                    raise ModelExists(model_id)
                await cur.execute(
                    "INSERT INTO download_requesters (model_id, subject) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    [model_id, requested_by],
                )
                await notify_workers(cur, model_id)
                return Download.model_validate(row)

        async with connection(self._pool) as conn:
            return await work(conn)

    # --- uploads --------------------------------------------------------------------------

    async def add_upload(self, upload: Upload) -> Upload:
        values = upload.model_dump(exclude={"created_at", "completed_at"})
        columns = list(values)
        row = await fetch_one(
            self._pool,
            f"INSERT INTO model_uploads ({', '.join(columns)})"
            f" VALUES ({', '.join(f'%({c})s' for c in columns)}) RETURNING *",
            values,
        )
        assert row is not None
        return Upload.model_validate(row)

    async def upload(self, upload_id: str) -> Upload | None:
        row = await fetch_one(self._pool, "SELECT * FROM model_uploads WHERE id = %s", [upload_id])
        return Upload.model_validate(row) if row else None

    async def open_uploads(self, created_by: str) -> int:
        """How many uploads `created_by` has open."""
        row = await fetch_one(
            self._pool,
            "SELECT count(*) AS open FROM model_uploads WHERE created_by = %s AND state = 'open'",
            [created_by],
        )
        return int(row["open"]) if row else 0

    async def reopen_upload(self, upload_id: str, multipart_id: str | None) -> None:
        """An open upload starts again: with a new multipart upload, for one."""
        await fetch_one(
            self._pool,
            "UPDATE model_uploads SET multipart_id = %s WHERE id = %s AND state = 'open'"
            " RETURNING id",
            [multipart_id, upload_id],
        )

    async def drop_upload(self, upload_id: str) -> bool:
        """Forget an upload that is open or complete (not registered)."""
        row = await fetch_one(
            self._pool,
            "DELETE FROM model_uploads WHERE id = %s AND state IN ('open', 'complete')"
            " RETURNING id",
            [upload_id],
        )
        return row is not None

    async def complete_upload(self, upload_id: str, size: int) -> Upload | None:
        """Mark an open upload complete with the size the store holds."""
        row = await fetch_one(
            self._pool,
            """
            UPDATE model_uploads SET state = 'complete', size = %s, completed_at = now()
            WHERE id = %s AND state = 'open' RETURNING *
            """,
            [size, upload_id],
        )
        return Upload.model_validate(row) if row else None

    # --- listing --------------------------------------------------------------------------

    async def models(
        self,
        *,
        visible_to: str | None,
        name: str | None = None,
        tags: list[str] | None = None,
        origin: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[ModelRecord], int]:
        """Ready records that match every filter (all of `tags`), by name then age; and
        how many match in all."""
        rows = await fetch_all(
            self._pool,
            f"""
            SELECT *, count(*) OVER () AS total FROM models WHERE {_MATCHING}
            ORDER BY name, created_at, id
            LIMIT %(limit)s OFFSET %(offset)s
            """,
            {
                "who": visible_to,
                "name": name,
                "origin": origin,
                "tags": Jsonb(tags or []),
                "limit": limit,
                "offset": offset,
            },
        )
        total = int(rows[0]["total"]) if rows else 0
        if not rows and offset:
            # Past the end: the count comes from no row, so ask for it alone.
            counted = await fetch_one(
                self._pool,
                f"""
                SELECT count(*) AS total FROM models WHERE {_MATCHING}
                """,
                {"who": visible_to, "name": name, "origin": origin, "tags": Jsonb(tags or [])},
            )
            total = int(counted["total"]) if counted else 0
        return [ModelRecord.model_validate(row) for row in rows], total
