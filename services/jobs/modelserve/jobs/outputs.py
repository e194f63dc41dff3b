"""A finished job's output file in the platform store: one JSON line per finished item,
in index order (`{"index", "state", "output", "error"}`), at `jobs/<id>/output.jsonl`.

A worker writes the file of one finished job at a time while holding that job's row
(`FOR UPDATE SKIP LOCKED`) in an open transaction, and records its location in
`jobs.result` in the same transaction: a worker that dies meanwhile releases the row and
another writes the file again (the same content under the same key). A cancelled job's
file is written once none of its items is running any more.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from modelserve.common.database import connection
from modelserve.common.objects import ObjectStore

PART_SIZE = 8 << 20
PAGE = 1000


def output_key(job_id: str) -> str:
    return f"jobs/{job_id}/output.jsonl"


def output_line(row: dict[str, Any]) -> bytes:
    line = {
        "index": row["index"],
        "state": row["state"],
        "output": row["output"],
        "error": row["error"],
    }
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


class OutputWriter:
    def __init__(self, pool: AsyncConnectionPool, objects: ObjectStore, bucket: str) -> None:
        self._pool = pool
        self._objects = objects
        self._bucket = bucket

    async def write_next(self) -> str | None:
        """Write the output file of one finished job that has none yet; its id, or None
        when there was none to write."""
        async with (
            connection(self._pool) as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(
                """
                SELECT id FROM jobs
                WHERE status IN ('done', 'failed', 'cancelled') AND result IS NULL
                  AND NOT EXISTS (SELECT 1 FROM job_items i WHERE i.job_id = jobs.id
                                  AND i.state = 'running' AND i.lease_until > now())
                ORDER BY finished_at LIMIT 1
                FOR UPDATE SKIP LOCKED
                """
            )
            row = await cur.fetchone()
            if row is None:
                return None
            job_id = str(row["id"])
            key = output_key(job_id)
            lines = await self._upload(cur, job_id, key)
            result = {"output": f"s3://{self._bucket}/{key}", "output_lines": lines}
            await cur.execute("UPDATE jobs SET result = %s WHERE id = %s", [Jsonb(result), job_id])
            return job_id

    async def _upload(self, cur: psycopg.AsyncCursor[dict[str, Any]], job_id: str, key: str) -> int:
        objects, bucket = self._objects, self._bucket
        upload_id = await asyncio.to_thread(objects.create_upload, bucket, key)
        etags: list[str] = []
        buffer = bytearray()
        lines = 0
        after = -1

        async def flush() -> None:
            number = len(etags) + 1
            data = bytes(buffer)
            etags.append(
                await asyncio.to_thread(objects.upload_part, bucket, key, upload_id, number, data)
            )
            buffer.clear()

        try:
            while True:
                await cur.execute(
                    """SELECT index, state, output, error FROM job_items
                       WHERE job_id = %s AND index > %s AND state IN ('done', 'failed')
                       ORDER BY index LIMIT %s""",
                    [job_id, after, PAGE],
                )
                rows = await cur.fetchall()
                for row in rows:
                    buffer += output_line(row)
                    lines += 1
                    if len(buffer) >= PART_SIZE:
                        await flush()
                if len(rows) < PAGE:
                    break
                after = rows[-1]["index"]
            if buffer or not etags:
                await flush()
            await asyncio.to_thread(objects.complete_upload, bucket, key, upload_id, etags)
        except BaseException:
            await asyncio.to_thread(objects.abort_upload, bucket, key, upload_id)
            raise
        return lines
