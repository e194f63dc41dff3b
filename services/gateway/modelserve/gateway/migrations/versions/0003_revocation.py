"""Revocation: a not-before time per user (revoked API keys already carry revoked_at).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("not_before", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("users", "not_before")
