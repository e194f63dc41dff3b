"""Schemas as pg_dump prints them: to load the schema an earlier release made (a
`pg_dump --schema-only` kept as a test fixture) into a schema of a test's own, and to
compare two schemas object by object."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from modelserve.testbed.postgres import ensure_installed

# The schema the fixtures were dumped from; its name is replaced by the test's schema.
DUMPED_SCHEMA = "modelserve_010"


def load_dump(database_url: str, dump: Path, schema: str) -> None:
    """The objects of `dump` made in `schema` (which exists), in one transaction."""
    text = dump.read_text()
    lines = [
        line
        for line in text.splitlines()
        # psql's own commands (\restrict) are no SQL; the schema is the test's.
        if not line.startswith("\\") and line != f"CREATE SCHEMA {DUMPED_SCHEMA};"
    ]
    target = sql.Identifier(schema).as_string(None)
    script = "\n".join(lines).replace(f"{DUMPED_SCHEMA}.", f"{target}.")
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute(script.encode())
        # pg_dump's script empties the search path for its session; put it back.
        conn.execute("RESET search_path")


def dump_schema(database_url: str, schema: str, *, exclude_tables: tuple[str, ...] = ()) -> str:
    """`pg_dump --schema-only` of `schema` without comments, psql commands and the schema's
    own name, so that the dumps of two schemas with the same objects are equal."""
    command = [
        str(ensure_installed() / "pg_dump"),
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        f"--schema={schema}",
        *(f"--exclude-table={schema}.{table}" for table in exclude_tables),
        database_url,
    ]
    text = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout
    kept = [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith(("--", "\\", "CREATE SCHEMA "))
    ]
    return "\n".join(kept).replace(f"{schema}.", "SCHEMA.")


def table_rows(url: str, tables: Iterable[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in `tables`, in a stable order: to tell that a migration
    kept them all, unchanged."""
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(
                sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(sql.Identifier(table))
            ).fetchall()
            for table in sorted(tables)
        }


def versions(url: str, version_table: str) -> list[tuple[Any, ...]]:
    """The rows of an Alembic version table: [(revision,)] where it is at one."""
    with psycopg.connect(url) as conn:
        query = sql.SQL("SELECT version_num FROM {}").format(sql.Identifier(version_table))
        return conn.execute(query).fetchall()
