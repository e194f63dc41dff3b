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


def test_a_database_from_before_gets_the_reservation_columns(
    database_url: str, db_schema: str
) -> None:
    """Reservations name their request and when they were charged (since charging)."""
    url = f"{database_url}?options=-csearch_path%3D{db_schema}"
    added = ["charged_at", "model", "subject", "team"]
    create_schema(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE reservations " + ", ".join(f"DROP COLUMN {column}" for column in added)
        )
    create_schema(url)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'reservations' AND column_name = ANY(%s)"
            " ORDER BY 1",
            [db_schema, added],
        ).fetchall()
    assert [row[0] for row in rows] == added
