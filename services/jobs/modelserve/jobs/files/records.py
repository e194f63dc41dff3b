"""The `files` table: one row per OpenAI File (an upload, or a batch's output or error
file), its content the object `key` in the platform store. A caller sees their own files;
admins and services every one (`who` None)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Literal

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from modelserve.common import bucket_layout
from modelserve.common.database import connection, fetch_all, fetch_one

Order = Literal["asc", "desc"]

_VISIBLE = "(%(who)s::text IS NULL OR owner = %(who)s)"


class FileRecord(BaseModel):
    id: str
    owner: str
    team: str | None
    purpose: str
    filename: str
    bytes: int
    lines: int
    status: str
    key: str
    job_id: str | None
    created_at: dt.datetime


# What new_file_id makes: anything else names no file (and never reaches a query).
FILE_ID_PATTERN = r"^file-[0-9a-f]{24}$"


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex[:24]}"


def is_file_id(text: str) -> bool:
    return re.fullmatch(FILE_ID_PATTERN, text) is not None


def file_key(owner: str, file_id: str) -> str:
    """Where a file's content lies in the platform store."""
    return f"{bucket_layout.FILES}{owner}/{file_id}"


INSERT = """
    INSERT INTO files (id, owner, team, purpose, filename, bytes, lines, key, job_id)
    VALUES (%(id)s, %(owner)s, %(team)s, %(purpose)s, %(filename)s, %(bytes)s, %(lines)s,
            %(key)s, %(job_id)s)
    RETURNING *
"""


def insert_params(
    *,
    file_id: str,
    owner: str,
    team: str | None,
    purpose: str,
    filename: str,
    size: int,
    lines: int,
    key: str,
    job_id: str | None = None,
) -> dict[str, Any]:
    """The parameters of INSERT (for a finisher that writes it in its own transaction)."""
    return {
        "id": file_id,
        "owner": owner,
        "team": team,
        "purpose": purpose,
        "filename": filename,
        "bytes": size,
        "lines": lines,
        "key": key,
        "job_id": job_id,
    }


class FileRecords:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def add(self, params: dict[str, Any]) -> FileRecord:
        async with (
            connection(self._pool) as conn,
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(INSERT, params)
            row = await cur.fetchone()
        return FileRecord.model_validate(row)

    async def get(self, file_id: str, *, who: str | None) -> FileRecord | None:
        row = await fetch_one(
            self._pool,
            f"SELECT * FROM files WHERE id = %(id)s AND {_VISIBLE}",
            {"id": file_id, "who": who},
        )
        return FileRecord.model_validate(row) if row else None

    async def page(
        self, *, who: str | None, purpose: str | None, after: str | None, limit: int, order: Order
    ) -> tuple[list[FileRecord], bool]:
        """Up to `limit` files by creation time in `order`, following the file `after`;
        whether more follow."""
        compare, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        rows = await fetch_all(
            self._pool,
            f"""
            SELECT * FROM files WHERE {_VISIBLE}
              AND (%(purpose)s::text IS NULL OR purpose = %(purpose)s)
              AND (%(after)s::text IS NULL OR (created_at, id) {compare}
                   (SELECT created_at, id FROM files WHERE id = %(after)s AND {_VISIBLE}))
            ORDER BY created_at {direction}, id {direction}
            LIMIT %(limit)s
            """,
            {"who": who, "purpose": purpose, "after": after, "limit": limit + 1},
        )
        records = [FileRecord.model_validate(row) for row in rows]
        return records[:limit], len(records) > limit

    async def delete(self, file_id: str, *, who: str | None) -> FileRecord | None:
        row = await fetch_one(
            self._pool,
            f"DELETE FROM files WHERE id = %(id)s AND {_VISIBLE} RETURNING *",
            {"id": file_id, "who": who},
        )
        return FileRecord.model_validate(row) if row else None
