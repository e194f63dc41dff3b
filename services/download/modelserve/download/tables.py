"""The download service's tables (SQLModel): jobs, model records, and the registry's
uploads, active versions and history.

A job is one row per model: asking again for a model that is queued, copying or ready
returns that row, so the work is done once. A job either downloads (copies from the
upstream store) or registers (copies a checkpoint already in the platform store, `kind`
`register`). The model record is written in the same transaction that marks the job
ready, so a record always points at a complete, verified copy.
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


class Kind(StrEnum):
    """What a job copies from: the upstream store, or the platform store (registration)."""

    DOWNLOAD = "download"
    REGISTER = "register"


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
    kind: Kind = Field(
        default=Kind.DOWNLOAD, sa_type=String, sa_column_kwargs={"server_default": "download"}
    )
    # Registration only: the record's tags and the free label of where it came from.
    tags: list[str] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    source_label: str | None = None
    # Registration by a user: the name may not be one whose versions they cannot see.
    name_checked_for: str | None = None
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
    # GET /models pages by name and age; made by the migrations since 0.1.0, named here
    # so that the models and the schema agree.
    __table_args__ = (Index("models_name_created", "name", "created_at", "id"),)

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
    # "download" (copied from upstream) or "register" (a registered version).
    origin: str = Field(
        default="download", sa_type=String, sa_column_kwargs={"server_default": "download"}
    )
    tags: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    )
    source_label: str | None = None  # registration: where it came from, as the caller says
    created_at: dt.datetime | None = _timestamp(nullable=False)
    updated_at: dt.datetime | None = _timestamp(nullable=False)


class Upload(SQLModel, table=True):
    """A checkpoint being uploaded into the staging prefix of the platform bucket by
    presigned URLs (one PUT, or the parts of an S3 multipart upload), then registered."""

    __tablename__ = "model_uploads"

    id: str = Field(primary_key=True)
    filename: str
    size: int = Field(sa_type=BigInteger)
    bucket: str
    key: str
    multipart_id: str | None = None  # the S3 multipart upload's id; None for a single PUT
    part_size: int | None = Field(default=None, sa_type=BigInteger)
    parts: int = Field(default=1, sa_column_kwargs={"server_default": text("1")})
    state: str = Field(default="open", sa_type=String)  # open, complete, registered
    created_by: str
    registered_as: str | None = None  # the model id registered from it
    created_at: dt.datetime | None = _timestamp(nullable=False)
    completed_at: dt.datetime | None = _timestamp()


class Active(SQLModel, table=True):
    """The active version of each model name: what servers of that name serve."""

    __tablename__ = "model_active"

    name: str = Field(primary_key=True)
    model_id: str
    set_by: str
    set_at: dt.datetime | None = _timestamp(nullable=False)
    history_id: int = Field(sa_type=BigInteger)  # the history row that set it


class History(SQLModel, table=True):
    """Every change of a name's active version: who, when, from which version to which."""

    __tablename__ = "model_history"
    __table_args__ = (
        Index("model_history_name", "name", "id"),
        # One automatic rollback per rollout and server, however often it is reported.
        Index(
            "model_history_rollback",
            "rollout_id",
            "server_uid",
            unique=True,
            postgresql_where=text("action = 'automatic_rollback'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    name: str
    from_id: str | None = None
    to_id: str | None = None
    actor: str
    action: str  # set_active, automatic_rollback
    reason: str | None = None
    message: str | None = None
    # Automatic rollbacks: the set_active row that started the rollout, the server that
    # failed it, and whether the pointer moved back (it had not moved on meanwhile).
    rollout_id: int | None = Field(default=None, sa_type=BigInteger)
    server: str | None = None
    server_uid: str | None = None
    pointer_moved: bool | None = None
    at: dt.datetime | None = _timestamp(nullable=False)
