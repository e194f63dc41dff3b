"""The jobs service's schema as release 0.1.0 made it, frozen here: revision 0001 makes
it, and the adoption of a database from 0.1.0 or before brings one to it (the statements
make only what is missing). Never edit these; a change of schema is a new revision.

A job is one row of `jobs`; its units of work are rows of `job_items`, keyed by
(job_id, index). An item's output is written in the transaction that marks it done,
fenced by its lease (owner and attempt), so an item taken again after its worker died is
recorded once."""

from __future__ import annotations

TABLES = ("files", "job_items", "jobs")

STATUSES = ("pending", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")

# What 0.1.0 ran at every start, on an empty database or on one of an earlier version
# (every statement makes only what is missing).
CREATE = (
    f"""
    CREATE TABLE IF NOT EXISTS jobs (
        id text PRIMARY KEY,
        type text NOT NULL,
        owner text NOT NULL,
        team text,
        model text,
        status text NOT NULL DEFAULT 'pending' CHECK (status IN {STATUSES!r}),
        total integer NOT NULL CHECK (total >= 0),
        done integer NOT NULL DEFAULT 0,
        failed integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        finished_at timestamptz,
        error text,
        spec jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        result jsonb
    )
    """,
    # The API key the job was queued with: its items run only while the key is valid.
    "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS key_id text",
    "CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs (owner, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs (status, created_at)",
    """
    CREATE TABLE IF NOT EXISTS job_items (
        job_id text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        index integer NOT NULL,
        state text NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'running', 'done', 'failed')),
        attempts integer NOT NULL DEFAULT 0,
        lease_owner text,  -- the worker holding it; once finished, the one that did
        lease_until timestamptz,
        input jsonb NOT NULL,
        output jsonb,
        error jsonb,
        finished_at timestamptz,
        PRIMARY KEY (job_id, index)
    )
    """,
    # OpenAI Files (modelserve.jobs.files): an uploaded file, or a batch's output file,
    # whose content is the object `key` in the platform store.
    """
    CREATE TABLE IF NOT EXISTS files (
        id text PRIMARY KEY,
        owner text NOT NULL,
        team text,
        purpose text NOT NULL,
        filename text NOT NULL,
        bytes bigint NOT NULL,
        lines integer NOT NULL,
        status text NOT NULL DEFAULT 'processed',
        key text NOT NULL,
        job_id text,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX IF NOT EXISTS files_owner_created ON files (owner, created_at DESC, id)",
    # What claims scan: items still to run (or whose worker may have died), job by job.
    """CREATE INDEX IF NOT EXISTS job_items_open ON job_items (job_id, index)
       WHERE state IN ('pending', 'running')""",
)
