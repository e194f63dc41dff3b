"""Contracts' `images`: the image patterns a ModelServe's spec.image may name.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE contracts ADD COLUMN images character varying[]")


def downgrade() -> None:
    op.drop_column("contracts", "images")
