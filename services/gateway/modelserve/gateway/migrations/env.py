"""Alembic's environment for the gateway's schema: online migrations only.

`upgrade` (in __init__.py) hands over its connection, already in a transaction and under
the migration lock; the `alembic` command line connects to `-x url=...` instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.schema import SchemaItem
from sqlmodel import SQLModel

from modelserve.common.database import sqlalchemy_url
from modelserve.gateway import accounts


def _ours(item: SchemaItem, name: str | None, kind: str, reflected: bool, _: object) -> bool:
    """Autogenerate compares the gateway's tables only (other services share SQLModel's
    metadata and, possibly, the database)."""
    return kind != "table" or name in accounts.ACCOUNT_TABLES


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        include_object=_ours,
        # Explicit, so that the version table sits beside the tables it versions.
        version_table_schema=connection.dialect.default_schema_name,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    if context.is_offline_mode():
        raise SystemExit("the gateway's migrations run online only")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("give the database with -x url=postgresql://...")
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


run()
