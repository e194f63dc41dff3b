"""The usage outbox: what each inference used, kept until the contract service has it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One row per settled request, written in the request path; `accounting.UsageSender`
    # claims due rows (FOR UPDATE SKIP LOCKED, so replicas share them), sends them to the
    # contract service under their id (which it de-duplicates) and deletes them once it
    # has them; a failed try moves `next_attempt_at` on by an exponential backoff.
    op.create_table(
        "usage_outbox",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("record", postgresql.JSONB, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("last_error", sa.String),
    )
    op.create_index("usage_outbox_due", "usage_outbox", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_table("usage_outbox")
