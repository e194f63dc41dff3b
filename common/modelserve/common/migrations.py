"""Alembic as every service runs it: at start-up, under an advisory lock, one version table
per service (services may share a database), and the adoption of a database that the
release before Alembic (0.1.0) made, which has the tables but no version table."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, create_engine, inspect
from sqlalchemy.schema import SchemaItem

from modelserve.common.database import sqlalchemy_url

# The revision that is the schema of 0.1.0, the last release without Alembic.
ADOPTED = "0001"


def upgrade(
    url: str,
    *,
    location: Path,
    lock: str,
    version_table: str,
    adopt: Callable[[Connection], bool] | None = None,
    revision: str = "head",
) -> None:
    """Bring the database of `url` to `revision` with the migrations in `location`, in one
    transaction under the advisory lock `lock`: replicas may start together, the first
    migrates and the others find nothing left to do.

    Without its version table, `adopt(connection)` is asked first: where it finds the
    tables of 0.1.0 it brings them to exactly revision 0001 and answers True, and the
    database is stamped 0001 instead of made anew. Tables and version table land in the
    first schema of the connection's search path.
    """
    config = Config()
    config.set_main_option("script_location", str(location))
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
            config.attributes["connection"] = connection
            schema = connection.dialect.default_schema_name
            versioned = inspect(connection).has_table(version_table, schema=schema)
            if not versioned and adopt is not None and adopt(connection):
                command.stamp(config, ADOPTED)
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def by_hand(upgrade: Callable[[str], None], variables: Sequence[str]) -> None:
    """`python -m modelserve.<service>.migrations`: `upgrade` on the database of the first
    of `variables` that is set (the service's own), without the rest of its settings."""
    for name in variables:
        url = os.environ.get(name)
        if url:
            upgrade(url)
            return
    raise SystemExit(f"set {variables[0]} to the database's URL")


def head(location: Path) -> str:
    """The newest revision of the migrations in `location`."""
    config = Config()
    config.set_main_option("script_location", str(location))
    revision = ScriptDirectory.from_config(config).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations in {location}")
    return revision


def existing_tables(connection: Connection, tables: Collection[str]) -> set[str]:
    """Which of `tables` the connection's first schema has."""
    schema = connection.dialect.default_schema_name
    return set(tables) & set(inspect(connection).get_table_names(schema=schema))


def run_environment(
    *,
    what: str,
    version_table: str,
    tables: Collection[str],
    metadata: MetaData | None = None,
) -> None:
    """The body of a service's `env.py`: online migrations only, on the connection that
    `upgrade` hands over or, from the `alembic` command line, on `-x url=...`.
    Autogenerate compares `tables` only: other services' tables may share the schema."""

    def ours(item: SchemaItem, name: str | None, kind: str, reflected: bool, _: object) -> bool:
        return kind != "table" or name in tables

    def migrate(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            include_object=ours,
            version_table=version_table,
            # Explicit, so that the version table sits beside the tables it versions.
            version_table_schema=connection.dialect.default_schema_name,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        raise SystemExit(f"{what}'s migrations run online only")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        migrate(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("give the database with -x url=postgresql://...")
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.begin() as own:
            migrate(own)
    finally:
        engine.dispose()
