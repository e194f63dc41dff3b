"""The contract service's schema under Alembic, on the test bed's PostgreSQL: a database
that release 0.1.0 made (contract_0_1_0.sql; how it was made is written at its top), with
rows in every table, is adopted and upgraded with every row kept and readable through the
store; an empty one migrates to the same schema; the models agree with the migrations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from modelserve.common import migrations as common_migrations
from modelserve.common.database import sqlalchemy_url
from modelserve.contract import migrations
from modelserve.contract.policy import CounterCharge
from modelserve.contract.store import Store
from modelserve.contract.tables import (
    Contract,
    Counter,
    Lease,
    Reservation,
    Server,
    SubjectKind,
    Usage,
    UsageReceipt,
)
from modelserve.download import migrations as download_migrations
from modelserve.gateway import migrations as gateway_migrations
from modelserve.jobs import migrations as jobs_migrations
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.schema_dumps import dump_schema, load_dump, table_rows, versions

pytestmark = pytest.mark.postgres
RELEASE_0_1_0 = Path(__file__).with_name("contract_0_1_0.sql")
TABLES = {t.__tablename__ for t in (Contract, Counter, Reservation, Server, Usage, UsageReceipt)}
# Every table of the head revision: those of 0.1.0 and the leases of 0002.
HEAD_TABLES = TABLES | {Lease.__tablename__}
RESERVATION = uuid.UUID("00000000-0000-4000-8000-000000000001")
RECEIPT = uuid.UUID("00000000-0000-4000-8000-000000000002")
# Rows as 0.1.0 wrote them: one or more in every table.
ROWS = [
    "INSERT INTO contracts (kind, name, models, max_servers, downloads,"
    " rate_limit_exempt_own_servers) VALUES ('user', 'alice', '{llama-*}', 2, true, true)",
    "INSERT INTO contracts (kind, name, token_budget, budget_period)"
    " VALUES ('team', 'nlp', 1000, 'month')",
    "INSERT INTO counters (scope, metric, window_start, used, reserved)"
    " VALUES ('user:alice', 'tokens/day', contract_window('day'), 5, 100)",
    "INSERT INTO reservations (id, scopes, metrics, window_starts, tokens, expires_at,"
    " subject, team, model) VALUES (%(reservation)s, '{user:alice}', '{tokens/day}',"
    " ARRAY[contract_window('day')], 100, now() + interval '1 hour', 'alice', 'nlp', 'llama')",
    "INSERT INTO servers (namespace, name, owner, team, replicas, gpus, model, runtime,"
    " confirmed) VALUES ('default', 'm1', 'alice', 'nlp', 1, 1, 'llama', 'llamacpp', true)",
    "INSERT INTO usage (day, subject, team, model, requests, prompt_tokens, completion_tokens)"
    " VALUES ((now() AT TIME ZONE 'UTC')::date, 'alice', 'nlp', 'llama', 3, 30, 40)",
    "INSERT INTO usage_receipts (id) VALUES (%(receipt)s)",
]


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    with fresh_schema(database_url, "contract_migrations") as name:
        yield name


async def _read_through_the_store(url: str) -> None:
    """Every row of 0.1.0 as the store reads it, and the functions of 0.1.0 settling a
    reservation and refusing a usage record counted before."""
    store = await Store.open(url, 2, 5.0, migrate=False)
    try:
        nlp, alice = await store.contracts()  # by kind, then name
        assert (alice.kind, alice.name, alice.models, alice.max_servers) == (
            SubjectKind.USER,
            "alice",
            ["llama-*"],
            2,
        )
        assert alice.downloads is True and alice.rate_limit_exempt_own_servers is True
        assert (nlp.name, nlp.token_budget, nlp.budget_period) == ("nlp", 1000, "month")
        server = await store.server("default", "m1")
        assert server is not None and (server.owner, server.team, server.confirmed) == (
            "alice",
            "nlp",
            True,
        )
        today = await store.today()
        usage = await store.usage(subject="alice", team=None, since=today)
        assert usage == [
            {"model": "llama", "requests": 3, "prompt_tokens": 30, "completion_tokens": 40}
        ]
        charges: list[CounterCharge] = []
        counted = await store.record_usage(
            reservation=None, charges=charges, prompt_tokens=1, completion_tokens=1,
            usage_id=RECEIPT, subject="alice", team="nlp", model="llama",
        )  # fmt: skip
        assert counted is None  # the receipt of 0.1.0: counted once, already
        settled = await store.record_usage(
            reservation=RESERVATION, charges=charges, prompt_tokens=10, completion_tokens=20,
            subject="alice", team="nlp", model="llama",
        )  # fmt: skip
        assert settled is True  # the reservation of 0.1.0, settled by contract_settle
    finally:
        await store.close()
    with psycopg.connect(url) as conn:
        counter = conn.execute("SELECT used, reserved FROM counters").fetchone()
    assert counter == (5 + 30, 0)


def test_a_database_of_release_0_1_0_with_rows_is_adopted_and_keeps_them(
    database_url: str, schema: str
) -> None:
    url = schema_url(database_url, schema)
    load_dump(database_url, RELEASE_0_1_0, schema)
    with psycopg.connect(url) as conn:
        for statement in ROWS:
            conn.execute(statement, {"reservation": RESERVATION, "receipt": RECEIPT})
    before = table_rows(url, TABLES)

    with ThreadPoolExecutor(2) as pool:  # two replicas starting on it at once
        list(pool.map(lambda _: migrations.upgrade(url), range(2)))

    assert versions(url, migrations.VERSION_TABLE) == [(migrations.head(),)]
    # Every row kept as it was; revision 0003 adds `images` to contracts, NULL (not set).
    after = {**before, "contracts": [(*row, None) for row in before["contracts"]]}
    assert table_rows(url, TABLES) == after
    schema_after = dump_schema(database_url, schema)
    migrations.upgrade(url)  # a restart: nothing changes
    assert dump_schema(database_url, schema) == schema_after
    assert table_rows(url, TABLES) == after
    asyncio.run(_read_through_the_store(url))


def test_an_adopted_database_has_the_schema_of_a_new_one(database_url: str) -> None:
    """Revision 0001 is exactly what 0.1.0 made, and an adopted database upgraded to the
    head is exactly what an empty one migrates to."""
    with (
        fresh_schema(database_url, "contract_old") as old,
        fresh_schema(database_url, "contract_new") as new,
        fresh_schema(database_url, "contract_ref") as reference,
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


def test_revision_0002_goes_down_to_exactly_0001(database_url: str) -> None:
    """The leases' revision undone: the table gone, and the functions of 0.1.0 as 0001 made
    them (0002 adds functions beside them and changes none)."""
    with (
        fresh_schema(database_url, "contract_down") as down,
        fresh_schema(database_url, "contract_ref") as reference,
    ):
        migrations.upgrade(schema_url(database_url, reference), "0001")
        url = schema_url(database_url, down)
        migrations.upgrade(url)
        config = Config()
        config.set_main_option("script_location", str(Path(migrations.__file__).parent))
        engine = create_engine(sqlalchemy_url(url))
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.downgrade(config, "0001")
        finally:
            engine.dispose()
        assert versions(url, migrations.VERSION_TABLE) == [("0001",)]
        assert dump_schema(database_url, down) == dump_schema(database_url, reference)


def test_a_database_with_only_some_tables_of_0_1_0_is_not_adopted(
    database_url: str, schema: str
) -> None:
    url = schema_url(database_url, schema)
    load_dump(database_url, RELEASE_0_1_0, schema)
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE usage_receipts")
    with pytest.raises(RuntimeError, match="but not usage_receipts"):
        migrations.upgrade(url)
    with psycopg.connect(url) as conn:  # nothing stamped: the transaction rolled back
        found = conn.execute("SELECT to_regclass(%s)", [migrations.VERSION_TABLE]).fetchone()
    assert found == (None,)


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
                    "include_object": (
                        lambda _, name, kind, *__: kind != "table" or name in HEAD_TABLES
                    ),
                },
            )
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()


def test_the_services_share_one_schema_each_with_its_own_version(
    database_url: str, schema: str
) -> None:
    """As the chart deploys them: every service on the one database (and schema), each
    migrating its own tables and keeping its own version table."""
    url = schema_url(database_url, schema)
    services = (gateway_migrations, migrations, download_migrations, jobs_migrations)
    for service in services:
        service.upgrade(url)
    for service in (migrations, download_migrations, jobs_migrations):
        assert versions(url, service.VERSION_TABLE) == [(service.head(),)]
    gateway_head = common_migrations.head(Path(gateway_migrations.__file__).parent)
    assert versions(url, "alembic_version") == [(gateway_head,)]
    schema_after = dump_schema(database_url, schema)
    for service in reversed(services):  # restarts, in another order: nothing changes
        service.upgrade(url)
    assert dump_schema(database_url, schema) == schema_after
