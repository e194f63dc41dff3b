"""The jobs service's schema under Alembic, on the test bed's PostgreSQL: a database that
release 0.1.0 made (jobs_0_1_0.sql; how it was made is written at its top), with rows in
every table, is adopted and upgraded with every row kept and readable through the store
(and its pending item claimed); an empty one migrates to the same schema. The jobs
service has no models (it writes its own SQL): the dumps are what is compared."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from modelserve.common.database import open_pool
from modelserve.jobs import migrations
from modelserve.jobs.files.records import FileRecords
from modelserve.jobs.migrations import release_0_1_0
from modelserve.jobs.store import JobStore
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.schema_dumps import dump_schema, load_dump, table_rows, versions

pytestmark = pytest.mark.postgres
RELEASE_0_1_0 = Path(__file__).with_name("jobs_0_1_0.sql")
FILE = "file-0123456789abcdef01234567"
# Rows as 0.1.0 wrote them: one or more in every table.
ROWS = [
    "INSERT INTO jobs (id, type, owner, team, model, status, total, done, started_at, spec,"
    " key_id) VALUES ('job-1', 'batch', 'alice', 'nlp', 'llama', 'running', 2, 1, now(),"
    " '{\"endpoint\": \"/v1/chat/completions\"}', 'key-1')",
    "INSERT INTO job_items (job_id, index, state, attempts, lease_owner, input, output,"
    " finished_at) VALUES ('job-1', 0, 'done', 1, 'worker-a', '{\"n\": 0}', '{\"answer\": 0}',"
    " now())",
    "INSERT INTO job_items (job_id, index, input) VALUES ('job-1', 1, '{\"n\": 1}')",
    "INSERT INTO files (id, owner, team, purpose, filename, bytes, lines, key, job_id)"
    f" VALUES ('{FILE}', 'alice', 'nlp', 'batch', 'in.jsonl', 20, 2, 'files/alice/{FILE}',"
    " 'job-1')",
]


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    with fresh_schema(database_url, "jobs_migrations") as name:
        yield name


async def _read_through_the_store(url: str) -> None:
    """Every row of 0.1.0 as the service reads it; its pending item goes to a worker."""
    pool = await open_pool(url, size=2, wait=5.0)
    try:
        store = JobStore(pool)
        job = await store.get("job-1", visible_to="alice")
        assert job is not None
        assert (job.status, job.total, job.done, job.key_id, job.spec) == (
            "running",
            2,
            1,
            "key-1",
            {"endpoint": "/v1/chat/completions"},
        )
        [done] = await store.outcomes("job-1")
        assert (done.index, done.state, done.output) == (0, "done", {"answer": 0})
        record = await FileRecords(pool).get(FILE, who="alice")
        assert record is not None and (record.filename, record.job_id) == ("in.jsonl", "job-1")
        item = await store.claim("worker-b", lease=30.0, types=["batch"], full_models=[])
        assert item is not None and (item.job_id, item.index, item.input) == (
            "job-1",
            1,
            {"n": 1},
        )
    finally:
        await pool.close()


def test_a_database_of_release_0_1_0_with_rows_is_adopted_and_keeps_them(
    database_url: str, schema: str
) -> None:
    url = schema_url(database_url, schema)
    load_dump(database_url, RELEASE_0_1_0, schema)
    with psycopg.connect(url) as conn:
        for statement in ROWS:
            conn.execute(statement)
    before = table_rows(url, release_0_1_0.TABLES)

    with ThreadPoolExecutor(2) as pool:  # two replicas starting on it at once
        list(pool.map(lambda _: migrations.upgrade(url), range(2)))

    assert versions(url, migrations.VERSION_TABLE) == [(migrations.head(),)]
    # Every row kept as it was; revision 0002 adds `queued_at` to jobs, NULL (never
    # resumed: the work was asked for when the job was created).
    after = {**before, "jobs": [(*row, None) for row in before["jobs"]]}
    assert table_rows(url, release_0_1_0.TABLES) == after
    schema_after = dump_schema(database_url, schema)
    migrations.upgrade(url)  # a restart: nothing changes
    assert dump_schema(database_url, schema) == schema_after
    assert table_rows(url, release_0_1_0.TABLES) == after
    asyncio.run(_read_through_the_store(url))


def test_a_database_from_before_0_1_0_gets_what_it_lacks_when_adopted(
    database_url: str, schema: str
) -> None:
    """What 0.1.0 made in older databases at every start (key_id, the files table, the
    index of open items), made by the adoption."""
    url = schema_url(database_url, schema)
    load_dump(database_url, RELEASE_0_1_0, schema)
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE files")
        conn.execute("DROP INDEX job_items_open")
        conn.execute("ALTER TABLE jobs DROP COLUMN key_id")
    migrations.upgrade(url)
    with fresh_schema(database_url, "jobs_new") as new:
        migrations.upgrade(schema_url(database_url, new))
        assert dump_schema(database_url, schema) == dump_schema(database_url, new)


def test_an_adopted_database_has_the_schema_of_a_new_one(database_url: str) -> None:
    """Revision 0001 is exactly what 0.1.0 made, and an adopted database upgraded to the
    head is exactly what an empty one migrates to."""
    with (
        fresh_schema(database_url, "jobs_old") as old,
        fresh_schema(database_url, "jobs_new") as new,
        fresh_schema(database_url, "jobs_ref") as reference,
    ):
        load_dump(database_url, RELEASE_0_1_0, reference)
        migrations.upgrade(schema_url(database_url, new), "0001")
        assert dump_schema(
            database_url, new, exclude_tables=(migrations.VERSION_TABLE,)
        ) == dump_schema(database_url, reference)

        migrations.upgrade(schema_url(database_url, new))
        load_dump(database_url, RELEASE_0_1_0, old)
        migrations.upgrade(schema_url(database_url, old))
        assert dump_schema(database_url, old) == dump_schema(database_url, new)
