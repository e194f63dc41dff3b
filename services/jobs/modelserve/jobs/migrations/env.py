"""Alembic's environment for the jobs service's schema (see modelserve.common.migrations)."""

from __future__ import annotations

from modelserve.common.migrations import run_environment
from modelserve.jobs import migrations
from modelserve.jobs.migrations import release_0_1_0

run_environment(
    what="the jobs service",
    version_table=migrations.VERSION_TABLE,
    # No models: the jobs service writes SQL of its own, so nothing to autogenerate from.
    tables=set(release_0_1_0.TABLES),
)
