"""Jobs' `queued_at`: when the work its items run was last asked for by its owner.

A job's items run as its owner, refused once the owner has revoked their sessions after
the work was asked for. That is when the job was created, unless the owner resumed it
since (data generation): then it is the resumption. NULL: the job's created_at.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE jobs ADD COLUMN queued_at timestamptz")


def downgrade() -> None:
    op.drop_column("jobs", "queued_at")
