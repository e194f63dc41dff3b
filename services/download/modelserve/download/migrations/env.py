"""Alembic's environment for the download service's schema (see modelserve.common.migrations)."""

from __future__ import annotations

from sqlmodel import SQLModel

from modelserve.common.migrations import run_environment
from modelserve.download import migrations
from modelserve.download.tables import Active, Download, History, ModelRecord, Requester, Upload

run_environment(
    what="the download service",
    version_table=migrations.VERSION_TABLE,
    tables={
        table.__tablename__ for table in (Active, Download, History, ModelRecord, Requester, Upload)
    },
    metadata=SQLModel.metadata,
)
