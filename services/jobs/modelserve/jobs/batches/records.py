"""What batches need of the `jobs` table beyond JobStore: a page of batches after a
cursor (OpenAI's `after`), and a batch that failed before it had any request (its input
file could not be used: empty, or too many requests)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from modelserve.common.database import fetch_all, fetch_one
from modelserve.jobs.store import Job

JOB_TYPE = "batch"


# What new_batch_id makes: anything else names no batch (and never reaches a query).
BATCH_ID_PATTERN = r"^batch_[0-9a-f]{24}$"


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex[:24]}"


def is_batch_id(text: str) -> bool:
    return re.fullmatch(BATCH_ID_PATTERN, text) is not None


async def page_batches(
    pool: AsyncConnectionPool, *, who: str | None, after: str | None, limit: int
) -> tuple[list[Job], bool]:
    """Up to `limit` batches, newest first, following the batch `after`; whether more
    follow."""
    rows = await fetch_all(
        pool,
        """
        SELECT * FROM jobs WHERE type = %(type)s
          AND (%(who)s::text IS NULL OR owner = %(who)s)
          AND (%(after)s::text IS NULL OR (created_at, id) <
               (SELECT created_at, id FROM jobs WHERE id = %(after)s
                  AND (%(who)s::text IS NULL OR owner = %(who)s)))
        ORDER BY created_at DESC, id DESC LIMIT %(limit)s
        """,
        {"type": JOB_TYPE, "who": who, "after": after, "limit": limit + 1},
    )
    jobs = [Job.model_validate(row) for row in rows]
    return jobs[:limit], len(jobs) > limit


async def create_failed(
    pool: AsyncConnectionPool,
    *,
    batch_id: str,
    owner: str,
    team: str | None,
    key_id: str | None,
    spec: dict[str, Any],
    error: dict[str, Any],
) -> Job:
    """A batch that failed at validation: no items, `errors` in its spec."""
    row = await fetch_one(
        pool,
        """
        INSERT INTO jobs (id, type, owner, team, key_id, status, total, spec, error,
                          finished_at)
        VALUES (%(id)s, %(type)s, %(owner)s, %(team)s, %(key_id)s, 'failed', 0, %(spec)s,
                %(message)s, now())
        RETURNING *
        """,
        {
            "id": batch_id,
            "type": JOB_TYPE,
            "owner": owner,
            "team": team,
            "key_id": key_id,
            "spec": Jsonb({**spec, "errors": [error]}),
            "message": error["message"],
        },
    )
    return Job.model_validate(row)
