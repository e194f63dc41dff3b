"""The schema of release 0.1.0: downloads and their requesters, model records, uploads,
the active version of every name and its history.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from modelserve.download.migrations import release_0_1_0

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in release_0_1_0.CREATE:
        op.execute(statement)


def downgrade() -> None:
    for table in release_0_1_0.TABLES:
        op.drop_table(table)
