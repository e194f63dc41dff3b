"""The download service's tables (SQLModel): download jobs and model records.

A job is one row per model: asking again for a model that is queued, copying or ready
returns that row, so the work is done once. The model record is written in the same
transaction that marks the job ready, so a record always points at a complete,
verified copy.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class State(StrEnum):
    QUEUED = "queued"
    TRANSFERRING = "transferring"
    VERIFYING = "verifying"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (State.QUEUED, State.TRANSFERRING, State.VERIFYING)
# Jobs that a new request or a retry queues again.
RETRYABLE = (State.FAILED, State.CANCELLED)
RUNNING = (State.TRANSFERRING, State.VERIFYING)


# Rows are inserted by SQL, not by the ORM: defaults must be the database's.
_ZERO = {"server_default": text("0")}


def _timestamp(*, nullable: bool = True) -> Any:
    return Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True),
            nullable=nullable,
            server_default=None if nullable else func.now(),
        ),
    )


class Download(SQLModel, table=True):
    __tablename__ = "downloads"
    __table_args__ = (
        Index(
            "downloads_claimable",
            "created_at",
            postgresql_where=text("state IN ('queued', 'transferring', 'verifying')"),
        ),
    )

    model_id: str = Field(primary_key=True)
    source_bucket: str
    source_key: str | None = None
    source_prefix: str | None = None
    name: str | None = None
    expected_sha256: str | None = None
    state: State = Field(default=State.QUEUED, sa_type=String)
    error_code: str | None = None
    error: str | None = None
    bytes_done: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs=_ZERO)
    bytes_total: int | None = Field(default=None, sa_type=BigInteger)
    files_done: int = Field(default=0, sa_column_kwargs=_ZERO)
    files_total: int | None = None
    rate: float | None = None  # bytes per second over this attempt so far
    attempts: int = Field(default=0, sa_column_kwargs=_ZERO)
    requested_by: str
    claimed_by: str | None = None
    lease_until: dt.datetime | None = _timestamp()
    created_at: dt.datetime | None = _timestamp(nullable=False)
    updated_at: dt.datetime | None = _timestamp(nullable=False)
    started_at: dt.datetime | None = _timestamp()
    finished_at: dt.datetime | None = _timestamp()


class Requester(SQLModel, table=True):
    """Who asked for a model's download: each of them sees its job and its record (the
    job's `requested_by` is whoever queued its current attempt)."""

    __tablename__ = "download_requesters"

    model_id: str = Field(primary_key=True)
    subject: str = Field(primary_key=True)


class ModelRecord(SQLModel, table=True):
    """A model in the platform store: what the gateway lists and a server loads."""

    __tablename__ = "models"

    id: str = Field(primary_key=True)
    name: str
    format: str
    size: int = Field(sa_type=BigInteger)
    sha256: str
    # Whether every file matched a checksum given by the request, the upstream object's
    # metadata or the upstream manifest (else the SHA-256 is only what was computed).
    verified: bool
    source: str  # s3://bucket/key-or-prefix upstream
    bucket: str
    storage_key: str  # the object (single file) or the prefix (folder), in `bucket`
    uri: str  # s3://bucket/storage_key: what a ModelServe's spec.model names
    files: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    state: str = Field(default="ready", sa_type=String)
    architecture: str | None = None
    parameters: int | None = Field(default=None, sa_type=BigInteger)
    quantization: str | None = None
    context_length: int | None = None
    requested_by: str
    created_at: dt.datetime | None = _timestamp(nullable=False)
    updated_at: dt.datetime | None = _timestamp(nullable=False)
