"""The contract service's schema, on real PostgreSQL. A database from before 0.1.0 (no
version table, columns missing) is adopted by the migrations: brought to 0.1.0's schema."""

from __future__ import annotations

import psycopg

from modelserve.contract.migrations import VERSION_TABLE, upgrade
from modelserve.contract.store import _UPSERT_SEEN, _seen_values
from modelserve.contract.tables import Server


def test_a_database_from_before_gets_the_columns_added_since(
    database_url: str, db_schema: str
) -> None:
    url = f"{database_url}?options=-csearch_path%3D{db_schema}"
    upgrade(url, "0001")  # the schema of 0.1.0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE contracts DROP COLUMN downloads")
        conn.execute(f"DROP TABLE {VERSION_TABLE}")
        conn.execute("INSERT INTO contracts (kind, name, max_servers) VALUES ('user', 'alice', 1)")
    upgrade(url)  # as a new release starts on the old database
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
    upgrade(url, "0001")  # the schema of 0.1.0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE reservations " + ", ".join(f"DROP COLUMN {column}" for column in added)
        )
        conn.execute(f"DROP TABLE {VERSION_TABLE}")
    upgrade(url)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'reservations' AND column_name = ANY(%s)"
            " ORDER BY 1",
            [db_schema, added],
        ).fetchall()
    assert [row[0] for row in rows] == added


def test_the_ledgers_owner_outlives_a_modelserve_without_labels(
    database_url: str, db_schema: str
) -> None:
    """A ModelServe from before owner labels were stamped keeps the owner the ledger
    recorded for it: the inventory seeing it unlabelled does not make it nobody's."""
    url = f"{database_url}?options=-csearch_path%3D{db_schema}"
    upgrade(url)
    old = Server(
        namespace="ns",
        name="m",
        owner="alice",
        team="nlp",
        replicas=1,
        gpus=1,
        model="m",
        runtime="vllm",
    )
    seen = old.model_copy(update={"owner": "", "team": "", "replicas": 2})
    labelled = old.model_copy(update={"team": "vision"})
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_UPSERT_SEEN, _seen_values(old))
        conn.execute(_UPSERT_SEEN, _seen_values(seen))
        row = conn.execute("SELECT owner, team, replicas FROM servers").fetchone()
        assert row == ("alice", "nlp", 2)
        conn.execute(_UPSERT_SEEN, _seen_values(labelled))  # labels, once there, win
        assert conn.execute("SELECT owner, team FROM servers").fetchone() == ("alice", "vision")
