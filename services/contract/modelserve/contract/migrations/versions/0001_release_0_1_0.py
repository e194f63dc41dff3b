"""The schema of release 0.1.0: contracts, counters, reservations, the server ledger,
usage and usage receipts, and the SQL functions that change counters.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op

from modelserve.contract.migrations import release_0_1_0

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in release_0_1_0.CREATE:
        op.execute(statement)
    # Straight to psycopg: through SQLAlchemy, `%` (as in %ROWTYPE) would be a parameter.
    driver: Any = op.get_bind().connection.driver_connection
    driver.execute(release_0_1_0.functions())


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS contract_lock, contract_window, contract_reserve,"
        " contract_settle, contract_charge_expired, contract_release_expired"
    )
    for table in release_0_1_0.TABLES:
        op.drop_table(table)
