"""PostgreSQL from Debian's packages: a real server with password authentication."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from modelserve.testbed.postgres import PostgresServer


def test_a_row_round_trips(database_url: str, db_schema: str) -> None:
    table = sql.Identifier(db_schema, "models")
    with psycopg.connect(database_url) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id uuid PRIMARY KEY, name text, size bigint)").format(table)
        )
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES (gen_random_uuid(), %s, %s)").format(table),
            ("SmolLM2-135M-Instruct", 98_000_000),
        )
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql.SQL("SELECT name, size FROM {}").format(table)).fetchone()
    assert row == ("SmolLM2-135M-Instruct", 98_000_000)


def test_a_wrong_password_is_refused(postgres: PostgresServer) -> None:
    dsn = postgres.dsn().replace(postgres.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, connect_timeout=5)
