"""An index of the items running now: what claims count per owner (whose jobs go first)
and per model (its cap), without reading the items still to run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS job_items_running ON job_items (job_id) WHERE state = 'running'"
    )


def downgrade() -> None:
    op.drop_index("job_items_running", "job_items")
