"""The contract service's schema, on real PostgreSQL."""

from __future__ import annotations

import psycopg

from modelserve.contract.store import create_schema


def test_a_database_from_before_gets_the_columns_added_since(
    database_url: str, db_schema: str
) -> None:
    url = f"{database_url}?options=-csearch_path%3D{db_schema}"
    create_schema(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE contracts DROP COLUMN downloads")
        conn.execute("INSERT INTO contracts (kind, name, max_servers) VALUES ('user', 'alice', 1)")
    create_schema(url)  # as a new release starts on the old database
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT max_servers, downloads FROM contracts WHERE name = 'alice'"
        ).fetchone()
    assert row == (1, None)
