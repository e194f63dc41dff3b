"""A finished job's files in the platform store and its summary (`jobs.result`).

A worker finishes one job at a time while holding that job's row (`FOR UPDATE SKIP
LOCKED`) in an open transaction: the job type's finisher reads the finished items, writes
its files and returns the summary, which is recorded in `jobs.result` in the same
transaction. A worker that dies meanwhile releases the row and another finishes the job
again (the same content under the same keys), so a job is finished exactly once in the
database. A cancelled job is finished once none of its items is running any more.

Without a finisher of its own, a job gets `jobs/<id>/output.jsonl`: one JSON line per
finished item in index order (`{"index", "state", "output", "error"}`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from modelserve.common import bucket_layout
from modelserve.common.database import DatabaseUnavailable, connection
from modelserve.common.objects import ObjectStore, StoreError
from modelserve.jobs.store import Job

PART_SIZE = 8 << 20
PAGE = 1000

Cursor = psycopg.AsyncCursor[dict[str, Any]]


def output_key(job_id: str) -> str:
    return f"{bucket_layout.JOB_OUTPUTS}{job_id}/output.jsonl"


def json_line(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def output_line(row: Mapping[str, Any]) -> bytes:
    return json_line(
        {
            "index": row["index"],
            "state": row["state"],
            "output": row["output"],
            "error": row["error"],
        }
    )


class JobFiles:
    """What a finisher works with: the finished items, the platform store, and the
    cursor of the transaction that holds the job's row (for rows of its own, written
    with the summary)."""

    def __init__(self, cur: Cursor, objects: ObjectStore, bucket: str) -> None:
        self.cursor = cur
        self._objects = objects
        self.bucket = bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    async def outcomes(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """Finished items of the job in index order: index, state, input, output, error."""
        after = -1
        while True:
            await self.cursor.execute(
                """SELECT index, state, input, output, error FROM job_items
                   WHERE job_id = %s AND index > %s AND state IN ('done', 'failed')
                   ORDER BY index LIMIT %s""",
                [job_id, after, PAGE],
            )
            rows = await self.cursor.fetchall()
            for row in rows:
                yield row
            if len(rows) < PAGE:
                return
            after = rows[-1]["index"]

    async def upload(self, key: str, lines: AsyncIterable[bytes]) -> tuple[int, int]:
        """Write `lines` to `key` (a multipart upload, parts of PART_SIZE): how many lines
        and bytes."""
        objects, bucket = self._objects, self.bucket
        upload_id = await asyncio.to_thread(objects.create_upload, bucket, key)
        etags: list[str] = []
        buffer = bytearray()
        count = size = 0

        async def flush() -> None:
            number = len(etags) + 1
            data = bytes(buffer)
            etags.append(
                await asyncio.to_thread(objects.upload_part, bucket, key, upload_id, number, data)
            )
            buffer.clear()

        try:
            async for line in lines:
                buffer += line
                count += 1
                size += len(line)
                if len(buffer) >= PART_SIZE:
                    await flush()
            if buffer or not etags:
                await flush()
            await asyncio.to_thread(objects.complete_upload, bucket, key, upload_id, etags)
        except BaseException:
            await asyncio.to_thread(objects.abort_upload, bucket, key, upload_id)
            raise
        return count, size


class Finisher(Protocol):
    async def __call__(self, job: Job, files: JobFiles) -> dict[str, Any]:
        """Write the finished job's files; its summary for `jobs.result`."""
        ...


async def write_output_file(job: Job, files: JobFiles) -> dict[str, Any]:
    """The default finisher: `jobs/<id>/output.jsonl`."""

    async def lines() -> AsyncIterator[bytes]:
        async for row in files.outcomes(job.id):
            yield output_line(row)

    key = output_key(job.id)
    count, _ = await files.upload(key, lines())
    return {"output": files.uri(key), "output_lines": count}


class FinishFailed(Exception):
    """A job type's finisher failed on a job (its cause attached); the job stays
    unfinished and is tried again later."""

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class OutputWriter:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        objects: ObjectStore,
        bucket: str,
        finishers: Mapping[str, Finisher] | None = None,
    ) -> None:
        self._pool = pool
        self._objects = objects
        self._bucket = bucket
        self._finishers = dict(finishers or {})

    async def write_next(self, exclude: Sequence[str] = ()) -> str | None:
        """Finish one finished job that has no result yet (but those of `exclude`): its
        id, or None when there was none to finish. FinishFailed when its finisher
        failed (nothing of it is recorded)."""
        async with (
            connection(self._pool) as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(
                """
                SELECT * FROM jobs
                WHERE status IN ('done', 'failed', 'cancelled') AND result IS NULL
                  AND NOT (id = ANY(%s))
                  AND NOT EXISTS (SELECT 1 FROM job_items i WHERE i.job_id = jobs.id
                                  AND i.state = 'running' AND i.lease_until > now())
                ORDER BY finished_at LIMIT 1
                FOR UPDATE SKIP LOCKED
                """,
                [list(exclude)],
            )
            row = await cur.fetchone()
            if row is None:
                return None
            job = Job.model_validate(row)
            finisher = self._finishers.get(job.type, write_output_file)
            try:
                result = await finisher(job, JobFiles(cur, self._objects, self._bucket))
            except (DatabaseUnavailable, StoreError, psycopg.OperationalError):
                raise
            except Exception as error:
                raise FinishFailed(job.id, f"{type(error).__name__}: {error}") from error
            await cur.execute("UPDATE jobs SET result = %s WHERE id = %s", [Jsonb(result), job.id])
            return job.id
