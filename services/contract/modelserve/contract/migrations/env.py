"""Alembic's environment for the contract service's schema (see modelserve.common.migrations)."""

from __future__ import annotations

from sqlmodel import SQLModel

from modelserve.common.migrations import run_environment
from modelserve.contract import migrations
from modelserve.contract.tables import (
    Contract,
    Counter,
    Lease,
    Reservation,
    Server,
    Usage,
    UsageReceipt,
)

run_environment(
    what="the contract service",
    version_table=migrations.VERSION_TABLE,
    tables={
        table.__tablename__
        for table in (Contract, Counter, Lease, Reservation, Server, Usage, UsageReceipt)
    },
    metadata=SQLModel.metadata,
)
