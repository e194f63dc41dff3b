"""The download service's schema under Alembic, on the test bed's PostgreSQL: a database
that release 0.1.0 made (download_0_1_0.sql; how it was made is written at its top), with
rows in every table, is adopted and upgraded with every row kept and readable through the
service's jobs, registry and versions; an empty one migrates to the same schema; the
models agree with the migrations."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from modelserve.common.database import sqlalchemy_url
from modelserve.download import migrations
from modelserve.download.jobs import Jobs
from modelserve.download.registry import Registry
from modelserve.download.tables import (
    Active,
    Download,
    History,
    ModelRecord,
    Requester,
    State,
    Upload,
)
from modelserve.download.versions import Versions
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.schema_dumps import dump_schema, load_dump, table_rows, versions

pytestmark = pytest.mark.postgres
RELEASE_0_1_0 = Path(__file__).with_name("download_0_1_0.sql")
TABLES = {t.__tablename__ for t in (Active, Download, History, ModelRecord, Requester, Upload)}
URI = "s3://models/llama-q4/q4.gguf"
# Rows as 0.1.0 wrote them: one or more in every table.
ROWS = [
    "INSERT INTO downloads (model_id, source_bucket, source_key, name, state, bytes_done,"
    " bytes_total, files_done, files_total, requested_by, kind, tags, finished_at)"
    " VALUES ('llama-q4', 'quant', 'llama/q4.gguf', 'llama', 'ready', 10, 10, 1, 1,"
    " 'alice', 'download', '[\"chat\"]', now())",
    "INSERT INTO download_requesters (model_id, subject)"
    " VALUES ('llama-q4', 'alice'), ('llama-q4', 'bob')",
    "INSERT INTO models (id, name, format, size, sha256, verified, source, bucket,"
    " storage_key, uri, files, state, quantization, requested_by, origin, tags)"
    " VALUES ('llama-q4', 'llama', 'gguf', 10, repeat('0', 64), true,"
    " 's3://quant/llama/q4.gguf', 'models', 'llama-q4/q4.gguf', %(uri)s,"
    " '[{\"key\": \"q4.gguf\", \"size\": 10}]', 'ready', 'Q4_K_M', 'alice', 'download',"
    " '[\"chat\"]')",
    "INSERT INTO model_uploads (id, filename, size, bucket, key, state, created_by)"
    " VALUES ('up1', 'mine.gguf', 5, 'models', 'uploads/up1/mine.gguf', 'open', 'bob')",
    "INSERT INTO model_history (name, from_id, to_id, actor, action)"
    " VALUES ('llama', NULL, 'llama-q4', 'alice', 'set_active')",
    "INSERT INTO model_active (name, model_id, set_by, history_id)"
    " VALUES ('llama', 'llama-q4', 'alice', 1)",
]


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    with fresh_schema(database_url, "download_migrations") as name:
        yield name


async def _read_through_the_service(url: str) -> None:
    """Every row of 0.1.0 as the service reads it (as an admin, and as its requesters)."""
    jobs = await Jobs.open(url, 2, migrate=False)
    try:
        job = await jobs.get("llama-q4", visible_to="bob")  # bob: a requester of 0.1.0
        assert job is not None
        assert (job.state, job.requested_by, job.tags, job.bytes_done) == (
            State.READY,
            "alice",
            ["chat"],
            10,
        )
        [record] = await jobs.models(visible_to="alice")
        assert (record.id, record.uri, record.files, record.tags) == (
            "llama-q4",
            URI,
            [{"key": "q4.gguf", "size": 10}],
            ["chat"],
        )
        upload = await Registry(jobs.pool).upload("up1")
        assert upload is not None and (upload.created_by, upload.size) == ("bob", 5)
        versions_ = Versions(jobs.pool)
        [active] = await versions_.active(who=None)
        assert (active.name, active.id, active.uri, active.history_id) == ("llama", *[
            "llama-q4", URI, 1,
        ])  # fmt: skip
        entries, total = await versions_.history(who=None, name="llama", limit=10, offset=0)
        assert total == 1 and (entries[0].to_id, entries[0].actor) == ("llama-q4", "alice")
    finally:
        await jobs.close()
    with psycopg.connect(url) as conn:  # the history's sequence goes on after 0.1.0's rows
        row = conn.execute(
            "INSERT INTO model_history (name, to_id, actor, action)"
            " VALUES ('llama', 'llama-q4', 'bob', 'set_active') RETURNING id"
        ).fetchone()
    assert row == (2,)


def test_a_database_of_release_0_1_0_with_rows_is_adopted_and_keeps_them(
    database_url: str, schema: str
) -> None:
    url = schema_url(database_url, schema)
    load_dump(database_url, RELEASE_0_1_0, schema)
    with psycopg.connect(url) as conn:
        for statement in ROWS:
            conn.execute(statement, {"uri": URI})
    before = table_rows(url, TABLES)

    with ThreadPoolExecutor(2) as pool:  # two replicas starting on it at once
        list(pool.map(lambda _: migrations.upgrade(url), range(2)))

    assert versions(url, migrations.VERSION_TABLE) == [(migrations.head(),)]
    assert table_rows(url, TABLES) == before
    schema_after = dump_schema(database_url, schema)
    migrations.upgrade(url)  # a restart: nothing changes
    assert dump_schema(database_url, schema) == schema_after
    assert table_rows(url, TABLES) == before
    asyncio.run(_read_through_the_service(url))


def test_a_database_from_before_0_1_0_gets_its_columns_when_adopted(
    database_url: str, schema: str
) -> None:
    """The columns 0.1.0 added to older databases at every start, added by the adoption."""
    url = schema_url(database_url, schema)
    load_dump(database_url, RELEASE_0_1_0, schema)
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE models DROP COLUMN origin, DROP COLUMN tags")
        conn.execute("DROP INDEX models_name_created")
    migrations.upgrade(url)
    reference = dump_schema(database_url, schema)
    with fresh_schema(database_url, "download_new") as new:
        migrations.upgrade(schema_url(database_url, new))
        # The same lines, but the added columns at the end of their table (so no comma).
        added = sorted(line.rstrip(",") for line in reference.splitlines())
        assert added == sorted(
            line.rstrip(",") for line in dump_schema(database_url, new).splitlines()
        )


def test_an_adopted_database_has_the_schema_of_a_new_one(database_url: str) -> None:
    """Revision 0001 is exactly what 0.1.0 made, and an adopted database upgraded to the
    head is exactly what an empty one migrates to."""
    with (
        fresh_schema(database_url, "download_old") as old,
        fresh_schema(database_url, "download_new") as new,
        fresh_schema(database_url, "download_ref") as reference,
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


def test_the_models_match_the_migrations(database_url: str, schema: str) -> None:
    """What autogenerate would write for a new revision: nothing, as long as the models
    of `tables` and the migrations agree."""
    url = schema_url(database_url, schema)
    migrations.upgrade(url)
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    # Other services' tables share SQLModel's metadata.
                    "include_object": lambda _, name, kind, *__: kind != "table" or name in TABLES,
                },
            )
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()
