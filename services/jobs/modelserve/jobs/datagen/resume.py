"""Data-generation jobs in the engine's tables, beyond what JobStore does for every job
type: whether an output folder is taken (and a lock on it while a job is created),
and resuming a finished job (`plan.items_to_add`
says what that means) in one transaction that holds the job's row."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from modelserve.common.database import connection, fetch_one
from modelserve.jobs.datagen.examples import Example
from modelserve.jobs.datagen.plan import KIND, DataGenSpec, item_inputs, items_to_add
from modelserve.jobs.store import Job

# How many of the job's own examples new items may show the model (the latest ones).
GENERATED_SHOWN = 200


async def output_taken(pool: AsyncConnectionPool, output_key: str) -> str | None:
    """The id of a data-generation job that writes to `output_key`, if any."""
    row = await fetch_one(
        pool,
        "SELECT id FROM jobs WHERE type = %s AND spec->>'output_key' = %s LIMIT 1",
        [KIND, output_key],
    )
    return str(row["id"]) if row else None


# The first key of the advisory locks on output folders (the second is the folder's
# hash): a number of this module's own, so that other locks of the database never meet it.
OUTPUT_LOCK = 0x6461_7467  # "datg"


@asynccontextmanager
async def output_lock(pool: AsyncConnectionPool, output_key: str) -> AsyncIterator[bool]:
    """Hold the transaction-level advisory lock on `output_key` while the block runs;
    yields whether it was taken (False: another create for that folder, or one whose
    hash is the same, holds it now). Checking that a folder is free and creating the job
    under it makes the two atomic across requests and replicas: the job is committed
    (on its own connection) before the lock is let go, so the next holder sees it."""
    async with connection(pool) as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", [OUTPUT_LOCK, output_key]
        )
        row = await cur.fetchone()
        yield bool(row and row[0])


def rng_for(job_id: str, round_: int) -> random.Random:
    """The sampling of a job's items, the same for the same job and round."""
    return random.Random(f"{job_id}/{round_}")


@dataclasses.dataclass(frozen=True)
class Resumer:
    """Who asks for the resumption: `visible_to` as for reads (None: admins and services,
    who may resume anyone's job); `sub`, `key_id` and `team` as their token says."""

    visible_to: str | None
    sub: str
    key_id: str | None
    team: str | None


async def resume(pool: AsyncConnectionPool, job_id: str, resumer: Resumer) -> Job | None:
    """Re-open a finished data-generation job: its pending items run again and the new
    items it needs are added (their prompts mix seeds with the job's own examples);
    its result is cleared so that its shards are written again once it finishes. None
    when there is no such job for the caller; ResumeRefused when it cannot resume.

    Its owner resuming it asks for the work anew: its items run from then on with the
    owner's present credentials (the key, or none, and team of this request), so a job
    whose owner has since revoked their sessions runs again. Anyone else resuming it
    (an admin, a service) leaves the owner's request as it was: the owner's revocation
    still stops it."""
    async with (
        connection(pool) as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            """SELECT * FROM jobs WHERE id = %(id)s AND type = %(type)s
                 AND (%(who)s::text IS NULL OR owner = %(who)s)
               FOR UPDATE""",
            {"id": job_id, "type": KIND, "who": resumer.visible_to},
        )
        row = await cur.fetchone()
        if row is None:
            return None
        job = Job.model_validate(row)
        spec = DataGenSpec.model_validate(job.spec)
        await cur.execute(
            """SELECT count(*) AS n FROM job_items
               WHERE job_id = %s AND state IN ('pending', 'running')""",
            [job_id],
        )
        counted = await cur.fetchone()
        open_items = int(counted["n"]) if counted else 0
        added = items_to_add(
            status=job.status,
            result=job.result,
            spec=spec,
            open_items=open_items,
            total=job.total,
        )
        if added:
            await cur.execute(
                """SELECT output->'example' AS example FROM job_items
                   WHERE job_id = %s AND state = 'done'
                     AND jsonb_typeof(output->'example') = 'object'
                   ORDER BY index DESC LIMIT %s""",
                [job_id, GENERATED_SHOWN],
            )
            generated = [Example.model_validate(r["example"]) for r in await cur.fetchall()]
            inputs = item_inputs(
                spec.seeds,
                generated,
                count=added,
                k=spec.examples_per_prompt,
                rng=rng_for(job_id, spec.resumes + 1),
            )
            async with cur.copy("COPY job_items (job_id, index, input) FROM STDIN") as copy:
                for offset, value in enumerate(inputs):
                    await copy.write_row([job_id, job.total + offset, Jsonb(value)])
        resumed: dict[str, Any] = {**job.spec, "resumes": spec.resumes + 1}
        await cur.execute(
            """UPDATE jobs SET total = total + %(added)s,
                   status = CASE WHEN started_at IS NULL THEN 'pending' ELSE 'running' END,
                   finished_at = NULL, error = NULL, result = NULL, spec = %(spec)s,
                   queued_at = CASE WHEN %(anew)s THEN now() ELSE queued_at END,
                   key_id = CASE WHEN %(anew)s THEN %(key_id)s ELSE key_id END,
                   team = CASE WHEN %(anew)s THEN %(team)s ELSE team END
               WHERE id = %(id)s RETURNING *""",
            {
                "added": added,
                "spec": Jsonb(resumed),
                "anew": resumer.sub == job.owner,
                "key_id": resumer.key_id,
                "team": resumer.team,
                "id": job_id,
            },
        )
        updated = await cur.fetchone()
    return Job.model_validate(updated)
