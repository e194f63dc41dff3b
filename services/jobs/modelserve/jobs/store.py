"""Jobs and their items in PostgreSQL: what clients ask (create, get, list, stats,
cancel) and what workers do (claim, renew, complete, fail, release).

Workers of any number of replicas claim items with `FOR UPDATE SKIP LOCKED` and hold them
under a lease they renew. Every write a worker makes about an item is fenced by
(lease_owner, attempts, state 'running'): a worker that lost its item (its lease ran out
and another took it) changes nothing, so no item is recorded twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from modelserve.common.database import connection, fetch_all, fetch_one

_LEASE = "now() + make_interval(secs => %(lease)s)"


class Job(BaseModel):
    id: str
    type: str
    owner: str
    team: str | None
    key_id: str | None = None
    model: str | None
    status: str
    total: int
    done: int
    failed: int
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str | None
    spec: dict[str, Any]
    result: dict[str, Any] | None


class Item(BaseModel):
    """An item as its worker holds it: the lease (`owner`, `attempts`) fences its writes;
    its job's owner (`job_owner`, `team`, `key_id`: whose request it is, and
    `job_queued_at`: when they asked for it) and `spec`."""

    job_id: str
    index: int
    attempts: int
    owner: str
    type: str
    model: str | None
    input: Any
    job_owner: str = ""
    team: str | None = None
    key_id: str | None = None
    spec: dict[str, Any] = {}
    job_queued_at: dt.datetime | None = None


class Stats(BaseModel):
    pending: int
    running: int
    done: int
    failed: int
    jobs_last_hour: int


class ItemOutcome(BaseModel):
    index: int
    state: str
    output: Any
    error: Any


async def _each(values: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(values, AsyncIterable):
        async for value in values:
            yield value
    else:
        for value in values:
            yield value


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex[:24]}"


# Visibility: `who` NULL sees every job (admins, services), else only its own.
_VISIBLE = "(%(who)s::text IS NULL OR owner = %(who)s)"
_FILTERS = f"""{_VISIBLE}
    AND (%(type)s::text IS NULL OR type = %(type)s)
    AND (%(status)s::text IS NULL OR status = %(status)s)"""


class JobStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connections, shared with the output writer (`outputs`)."""
        return self._pool

    # --- what clients ask -----------------------------------------------------------------

    async def create(
        self,
        *,
        type: str,
        owner: str,
        team: str | None,
        model: str | None,
        spec: dict[str, Any],
        inputs: Iterable[Any] | AsyncIterable[Any],
        key_id: str | None = None,
        job_id: str | None = None,
    ) -> Job:
        """A pending job of one item per input, copied in as they come (an async
        iterable streams a large input file), all in one transaction: the job exists
        with all its items or not at all. ValueError for a job without items."""
        job_id = job_id or new_job_id()
        async with (
            connection(self._pool) as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(
                """
                INSERT INTO jobs (id, type, owner, team, key_id, model, total, spec)
                VALUES (%s, %s, %s, %s, %s, %s, 0, %s)
                """,
                [job_id, type, owner, team, key_id, model, Jsonb(spec)],
            )
            count = 0
            async with cur.copy("COPY job_items (job_id, index, input) FROM STDIN") as copy:
                async for value in _each(inputs):
                    await copy.write_row([job_id, count, Jsonb(value)])
                    count += 1
            if count == 0:
                raise ValueError("a job needs at least one item")
            await cur.execute(
                "UPDATE jobs SET total = %s WHERE id = %s RETURNING *", [count, job_id]
            )
            row = await cur.fetchone()
        return Job.model_validate(row)

    async def get(self, job_id: str, *, visible_to: str | None) -> Job | None:
        row = await fetch_one(
            self._pool,
            f"SELECT * FROM jobs WHERE id = %(id)s AND {_VISIBLE}",
            {"id": job_id, "who": visible_to},
        )
        return Job.model_validate(row) if row else None

    async def page(
        self,
        *,
        visible_to: str | None,
        type: str | None,
        status: str | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Job], int]:
        """A page of jobs, newest first, and how many match in all."""
        params = {"who": visible_to, "type": type, "status": status}
        rows = await fetch_all(
            self._pool,
            f"""SELECT * FROM jobs WHERE {_FILTERS}
                ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s""",
            {**params, "limit": limit, "offset": offset},
        )
        counted = await fetch_one(
            self._pool, f"SELECT count(*) AS n FROM jobs WHERE {_FILTERS}", params
        )
        return [Job.model_validate(row) for row in rows], int(counted["n"]) if counted else 0

    async def stats(self, *, visible_to: str | None) -> Stats:
        row = await fetch_one(
            self._pool,
            f"""
            SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                   count(*) FILTER (WHERE status = 'running') AS running,
                   count(*) FILTER (WHERE status = 'done') AS done,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE created_at > now() - interval '1 hour')
                       AS jobs_last_hour
            FROM jobs WHERE {_VISIBLE}
            """,
            {"who": visible_to},
        )
        return Stats.model_validate(row)

    async def cancel(self, job_id: str, *, visible_to: str | None) -> Job | None:
        """Cancel a pending or running job: its pending items are never taken, its running
        ones are stopped by their workers at their next renewal. None when it is not
        there (or not visible); the job as it is when it had finished already."""
        row = await fetch_one(
            self._pool,
            f"""
            UPDATE jobs SET status = 'cancelled', finished_at = now(),
                error = 'cancelled on request'
            WHERE id = %(id)s AND {_VISIBLE} AND status IN ('pending', 'running')
            RETURNING *
            """,
            {"id": job_id, "who": visible_to},
        )
        if row is not None:
            return Job.model_validate(row)
        return await self.get(job_id, visible_to=visible_to)

    async def outcomes(
        self, job_id: str, *, after: int = -1, limit: int = 1000
    ) -> list[ItemOutcome]:
        """Finished items of a job in index order (for assembling an output file)."""
        rows = await fetch_all(
            self._pool,
            """SELECT index, state, output, error FROM job_items
               WHERE job_id = %s AND index > %s AND state IN ('done', 'failed')
               ORDER BY index LIMIT %s""",
            [job_id, after, limit],
        )
        return [ItemOutcome.model_validate(row) for row in rows]

    # --- what workers do ------------------------------------------------------------------

    async def claim(
        self,
        worker: str,
        *,
        lease: float,
        types: Sequence[str],
        full_models: Sequence[str],
        caps: Mapping[str, int] | None = None,
        default_cap: int | None = None,
        max_attempts: int | None = None,
    ) -> Item | None:
        """The next item of an open job of one of `types`: pending, or running under a
        lease that ran out (its worker died); of the jobs of the owners with the fewest
        items running now first, the oldest first among those. Items of models in `full_models`
        (at this worker's cap) are left to others. The job becomes running.

        `caps` (by model; `default_cap` for models it does not name) bounds the items
        of a model running at once across every worker: the claim counts the model's
        live leases under a transaction-level advisory lock of that model, so
        concurrent claims never take more than its cap between them.
        With `max_attempts`, an item whose lease ran out on its `max_attempts`-th try
        (a poison item that kills its worker) is failed as `worker_lost` instead."""
        full = set(full_models)
        while True:
            async with (
                connection(self._pool) as conn,
                conn.transaction(),
                conn.cursor(row_factory=dict_row) as cur,
            ):
                outcome = await _claim_once(
                    cur,
                    worker,
                    lease=lease,
                    types=types,
                    full=full,
                    caps=caps or {},
                    default_cap=default_cap,
                    max_attempts=max_attempts,
                )
            if outcome is None or isinstance(outcome, Item):
                return outcome
            # A model at its cap (look again without it), or a poison item failed.
            if outcome.full is not None:
                full.add(outcome.full)

    async def renew(
        self, worker: str, items: Sequence[Item], *, lease: float
    ) -> set[tuple[str, int]]:
        """Renew the leases of `items`; the (job_id, index) of those still this worker's
        and in a running job. The others are lost (taken again, or their job cancelled)."""
        if not items:
            return set()
        rows = await fetch_all(
            self._pool,
            f"""
            UPDATE job_items i SET lease_until = {_LEASE}
            FROM jobs j, unnest(%(jobs)s::text[], %(indexes)s::int[], %(attempts)s::int[])
                AS held(job_id, index, attempts)
            WHERE i.job_id = held.job_id AND i.index = held.index
              AND i.attempts = held.attempts AND i.lease_owner = %(worker)s
              AND i.state = 'running' AND j.id = i.job_id AND j.status = 'running'
            RETURNING i.job_id, i.index
            """,
            {
                "lease": lease,
                "worker": worker,
                "jobs": [item.job_id for item in items],
                "indexes": [item.index for item in items],
                "attempts": [item.attempts for item in items],
            },
        )
        return {(row["job_id"], row["index"]) for row in rows}

    async def complete(self, item: Item, output: Any) -> bool:
        """Record the item's output and mark it done, both or neither; False when the item
        is no longer this worker's (nothing written)."""
        return await self._finish(item, "done", output=output, error=None)

    async def fail(self, item: Item, error: dict[str, Any]) -> bool:
        """Mark the item failed for good with `error` (code, message)."""
        return await self._finish(item, "failed", output=None, error=error)

    async def release(
        self,
        item: Item,
        error: dict[str, Any],
        *,
        max_attempts: int,
        delay: float,
        busy: bool = False,
        max_busy: int = 0,
    ) -> bool:
        """An attempt that may succeed later: the item is pending again, claimed no sooner
        than `delay` seconds from now, or failed when it has been tried `max_attempts`
        times. A `busy` attempt (the gateway asked to wait) gives its attempt back, at
        most `max_busy` times per item (counted in its error's `busy`)."""
        # A pending item's lease_until is the time before which no one claims it.
        row = await fetch_one(
            self._pool,
            """
            UPDATE job_items SET state = 'pending', lease_owner = NULL,
                lease_until = now() + make_interval(secs => %(delay)s),
                attempts = attempts - CASE WHEN %(busy)s AND %(seen)s < %(max_busy)s
                                           THEN 1 ELSE 0 END,
                error = %(error)s::jsonb || jsonb_build_object(
                    'busy', %(seen)s + CASE WHEN %(busy)s THEN 1 ELSE 0 END)
            WHERE job_id = %(job)s AND index = %(index)s AND lease_owner = %(owner)s
              AND attempts = %(attempts)s AND state = 'running'
              AND (%(busy)s AND %(seen)s < %(max_busy)s OR attempts < %(max_attempts)s)
            RETURNING index
            """,
            {
                "delay": delay,
                "busy": busy,
                "seen": await self._busy_count(item),
                "max_busy": max_busy,
                "error": Jsonb(error),
                "job": item.job_id,
                "index": item.index,
                "owner": item.owner,
                "attempts": item.attempts,
                "max_attempts": max_attempts,
            },
        )
        if row is not None:
            return True
        # Out of attempts (or no longer ours: then failing changes nothing either).
        return await self.fail(item, error)

    async def _busy_count(self, item: Item) -> int:
        row = await fetch_one(
            self._pool,
            "SELECT coalesce((error->>'busy')::int, 0) AS busy FROM job_items"
            " WHERE job_id = %s AND index = %s",
            [item.job_id, item.index],
        )
        return int(row["busy"]) if row else 0

    async def abandon(self, worker: str, items: Sequence[Item]) -> int:
        """Give up the leases of `items` this worker stopped (their job was cancelled):
        pending again at once, so that the job's files need not wait for the leases to
        run out. Items taken by another worker meanwhile are left alone."""
        if not items:
            return 0
        rows = await fetch_all(
            self._pool,
            """
            UPDATE job_items i SET state = 'pending', lease_owner = NULL, lease_until = NULL
            FROM unnest(%(jobs)s::text[], %(indexes)s::int[], %(attempts)s::int[])
                AS held(job_id, index, attempts)
            WHERE i.job_id = held.job_id AND i.index = held.index
              AND i.attempts = held.attempts AND i.lease_owner = %(worker)s
              AND i.state = 'running'
            RETURNING i.index
            """,
            {
                "worker": worker,
                "jobs": [item.job_id for item in items],
                "indexes": [item.index for item in items],
                "attempts": [item.attempts for item in items],
            },
        )
        return len(rows)

    async def _finish(self, item: Item, state: str, *, output: Any, error: Any) -> bool:
        async with connection(self._pool) as conn, conn.transaction():
            return await _finish_item(conn, item, state, output, error)


async def _finish_item(
    conn: psycopg.AsyncConnection[Any], item: Item, state: str, output: Any, error: Any
) -> bool:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """
            UPDATE job_items SET state = %s, output = %s, error = %s, finished_at = now(),
                lease_until = NULL
            WHERE job_id = %s AND index = %s AND lease_owner = %s AND attempts = %s
              AND state = 'running'
              -- A job whose files are written takes no more outcomes (a straggler
              -- whose lease ran out while its job was cancelled and finished).
              AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = %s AND result IS NOT NULL)
            """,
            [
                state,
                None if output is None else Jsonb(output),
                None if error is None else Jsonb(error),
                item.job_id,
                item.index,
                item.owner,
                item.attempts,
                item.job_id,
            ],
        )
        if cur.rowcount != 1:
            return False
        column = "done" if state == "done" else "failed"
        # The job's counters, and its end when this was its last item; a cancelled job
        # keeps its status (an item running when it was cancelled may still finish).
        await cur.execute(
            f"""
            UPDATE jobs SET {column} = {column} + 1,
                status = CASE WHEN status = 'running' AND done + failed + 1 >= total
                              THEN (CASE WHEN done + (%(done)s)::int = 0 THEN 'failed'
                                         ELSE 'done' END)
                              ELSE status END,
                finished_at = CASE WHEN status = 'running' AND done + failed + 1 >= total
                                   THEN now() ELSE finished_at END,
                error = CASE WHEN status = 'running' AND done + failed + 1 >= total
                                  AND done + (%(done)s)::int = 0
                             THEN 'every item failed' ELSE error END
            WHERE id = %(id)s
            """,
            {"id": item.job_id, "done": 1 if state == "done" else 0},
        )
        return True


@dataclasses.dataclass(frozen=True)
class _Again:
    """A claim to try again, leaving out `full` (a model at its cap) when it is set."""

    full: str | None


# An item a claim may take: pending and not waiting out a back-off, or running under a
# lease that ran out (its worker died).
_CLAIMABLE = """
    ((i.state = 'pending' AND (i.lease_until IS NULL OR i.lease_until < now()))
     OR (i.state = 'running' AND i.lease_until < now()))
"""

# The open jobs with an item to claim, in the order claims serve them: first the jobs of
# the owners with the fewest items running now, so that one owner's large job does not
# hold back everyone's; among those, the oldest first.
_PICK_JOBS = f"""
    WITH running AS (
        SELECT j.owner, count(*) AS n FROM job_items i JOIN jobs j ON j.id = i.job_id
        WHERE i.state = 'running' AND i.lease_until > now()
        GROUP BY j.owner
    )
    SELECT j.id FROM jobs j LEFT JOIN running r ON r.owner = j.owner
    WHERE j.status IN ('pending', 'running') AND j.type = ANY(%(types)s)
      AND NOT (coalesce(j.model, '') = ANY(%(full)s))
      AND EXISTS (SELECT 1 FROM job_items i WHERE i.job_id = j.id AND {_CLAIMABLE})
    ORDER BY coalesce(r.n, 0), j.created_at, j.id
"""

# A claim's pick: the next claimable item of one open job, its row locked.
_PICK = f"""
    SELECT i.job_id, i.index, i.state, i.attempts, i.lease_owner, j.model
    FROM job_items i JOIN jobs j ON j.id = i.job_id
    WHERE i.job_id = %(job)s AND j.status IN ('pending', 'running') AND {_CLAIMABLE}
    ORDER BY i.index
    LIMIT 1
    FOR UPDATE OF i SKIP LOCKED
"""


async def _pick(
    cur: psycopg.AsyncCursor[dict[str, Any]], types: Sequence[str], full: set[str]
) -> dict[str, Any] | None:
    """The next item to claim, its row locked: of the first job in _PICK_JOBS' order with
    an item no other claim holds."""
    await cur.execute(_PICK_JOBS, {"types": list(types), "full": list(full)})
    for job in await cur.fetchall():
        await cur.execute(_PICK, {"job": job["id"]})
        picked = await cur.fetchone()
        if picked is not None:
            return picked
    return None


# Items of a model whose lease is live, whatever their job's status: a cancelled job's
# running items still hold a server's slot until their worker learns it, which is at
# most one lease after the cancel (renewals of a cancelled job's items fail).
_LIVE = """
    SELECT count(*) AS n FROM jobs j JOIN job_items i ON i.job_id = j.id
    WHERE coalesce(j.model, '') = %(model)s
      AND (j.status IN ('pending', 'running')
           OR (j.status = 'cancelled'
               AND j.finished_at > now() - make_interval(secs => %(lease)s)))
      AND i.state = 'running' AND i.lease_until > now()
"""


async def _claim_once(
    cur: psycopg.AsyncCursor[dict[str, Any]],
    worker: str,
    *,
    lease: float,
    types: Sequence[str],
    full: set[str],
    caps: Mapping[str, int],
    default_cap: int | None,
    max_attempts: int | None,
) -> Item | _Again | None:
    """One try of a claim in the caller's transaction: the claimed item; None when there
    is nothing to claim; _Again when the picked item's model is at its cap or the item
    was failed as `worker_lost`."""
    picked = await _pick(cur, types, full)
    if picked is None:
        return None
    model = picked["model"] or ""
    if (
        max_attempts is not None
        and picked["state"] == "running"
        and picked["attempts"] >= max_attempts
    ):
        lost = Item(
            job_id=picked["job_id"],
            index=picked["index"],
            attempts=picked["attempts"],
            owner=picked["lease_owner"] or "",
            type="",
            model=picked["model"],
            input=None,
        )
        error = {
            "code": "worker_lost",
            "message": f"its worker was lost each of the {picked['attempts']} times it ran",
        }
        await _finish_item(cur.connection, lost, "failed", None, error)
        return _Again(full=None)
    cap = caps.get(model, default_cap)
    if cap is not None:
        # Held until this transaction ends: the claims of one model take turns, and each
        # counts the leases of those before it (committed before the lock was let go).
        await cur.execute(
            "SELECT pg_advisory_xact_lock(hashtext('modelserve-jobs-cap'), hashtext(%s))",
            [model],
        )
        await cur.execute(_LIVE, {"model": model, "lease": lease})
        live = await cur.fetchone()
        if live is not None and int(live["n"]) >= cap:
            return _Again(full=model)
    await cur.execute(
        f"""
        UPDATE job_items i SET state = 'running', attempts = i.attempts + 1,
            lease_owner = %(worker)s, lease_until = {_LEASE}
        FROM jobs j
        WHERE i.job_id = %(job)s AND i.index = %(index)s AND j.id = i.job_id
        RETURNING i.job_id, i.index, i.attempts, i.lease_owner AS owner,
                  j.type, j.model, i.input, j.owner AS job_owner, j.team,
                  j.key_id, j.spec,
                  COALESCE(j.queued_at, j.created_at) AS job_queued_at
        """,
        {"worker": worker, "lease": lease, "job": picked["job_id"], "index": picked["index"]},
    )
    row = await cur.fetchone()
    assert row is not None  # its row is locked by this transaction
    await cur.execute(
        """UPDATE jobs SET status = 'running', started_at = now()
           WHERE id = %s AND status = 'pending'""",
        [row["job_id"]],
    )
    return Item.model_validate(row)
