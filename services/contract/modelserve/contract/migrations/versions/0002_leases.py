"""Leases: slices of limited counters granted to a gateway process (table `leases`), and
the functions that grant, renew, give back, settle and charge them
(functions_0002_leases.sql).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-20
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CREATE = (
    """
    CREATE TABLE leases (
        id uuid NOT NULL,
        holder character varying NOT NULL,
        scope character varying NOT NULL,
        metric character varying NOT NULL,
        window_start timestamp with time zone NOT NULL,
        granted bigint NOT NULL,
        taken bigint,
        settled bigint NOT NULL,
        expires_at timestamp with time zone NOT NULL,
        charged_at timestamp with time zone,
        CONSTRAINT leases_pkey PRIMARY KEY (id)
    )
    """,
    "CREATE INDEX ix_leases_expires_at ON leases USING btree (expires_at)",
)
FUNCTIONS = "contract_window_end, contract_leases, contract_record_usage, contract_charge_leases"


def upgrade() -> None:
    for statement in CREATE:
        op.execute(statement)
    # Straight to psycopg, as in 0001: through SQLAlchemy `%` would be a parameter.
    driver: Any = op.get_bind().connection.driver_connection
    driver.execute(
        files("modelserve.contract.migrations").joinpath("functions_0002_leases.sql").read_text()
    )


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTIONS}")
    op.drop_table("leases")
