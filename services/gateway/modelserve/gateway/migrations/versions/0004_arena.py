"""The arena: battles (two anonymous models, a conversation each) and their votes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def upgrade() -> None:
    # One row per battle. `busy_until` and `claim` are a lease: set while a turn is being
    # answered (by one replica), cleared when it ends; a replica that dies mid-turn frees
    # it at expiry.
    # `scope` says which leaderboard its vote feeds: global (platform models only), team
    # (a team's models, `team`), or private (a model of one user's own).
    op.create_table(
        "arena_battles",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("teams", postgresql.ARRAY(sa.String), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("team", sa.String(255)),
        sa.Column("model_a", sa.String(255), nullable=False),
        sa.Column("model_b", sa.String(255), nullable=False),
        # The servers (ModelServe uids) each side's requests go to, fixed at the start: a
        # later turn goes to the same two, never to whatever the names point to then.
        sa.Column("server_a", sa.String(64), nullable=False),
        sa.Column("server_b", sa.String(64), nullable=False),
        sa.Column("anonymous", sa.Boolean, nullable=False),
        sa.Column("conversation_a", postgresql.JSONB, nullable=False),
        sa.Column("conversation_b", postgresql.JSONB, nullable=False),
        sa.Column("turns", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("void_reason", sa.String),
        sa.Column("busy_until", sa.DateTime(timezone=True)),
        # The turn holding the lease: only it may keep, forget or void its turn.
        sa.Column("claim", sa.String(64)),
        _now(),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index("arena_battles_owner", "arena_battles", ["owner", "created_at"])
    # One vote per battle (the primary key), with what was voted on as it was then: both
    # conversations and models, the voter and their teams, and whether it counts.
    op.create_table(
        "arena_votes",
        sa.Column(
            "battle_id",
            sa.String(64),
            sa.ForeignKey("arena_battles.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("vote", sa.String(16), nullable=False),
        sa.Column("voter", sa.String(255), nullable=False),
        sa.Column("teams", postgresql.ARRAY(sa.String), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("team", sa.String(255)),
        sa.Column("model_a", sa.String(255), nullable=False),
        sa.Column("model_b", sa.String(255), nullable=False),
        sa.Column("conversation_a", postgresql.JSONB, nullable=False),
        sa.Column("conversation_b", postgresql.JSONB, nullable=False),
        sa.Column("counts", sa.Boolean, nullable=False),
        sa.Column("excluded_because", sa.String(64)),
        sa.Column("revealed", postgresql.JSONB, nullable=False),
        sa.Column("style_a", postgresql.JSONB, nullable=False),
        sa.Column("style_b", postgresql.JSONB, nullable=False),
        sa.Column(
            "voted_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index("arena_votes_voted_at", "arena_votes", ["voted_at"])
    op.create_index("arena_votes_voter", "arena_votes", ["voter", "voted_at"])


def downgrade() -> None:
    op.drop_table("arena_votes")
    op.drop_table("arena_battles")
