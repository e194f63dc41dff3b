"""The contract service's tables (SQLModel); the migrations in `migrations/` make them.

Counters, reservations and the server ledger are written only through the SQL functions
that the migrations make (`migrations/functions_0_1_0.sql`), one statement per decision,
so that every replica of the service sees and changes the same numbers under PostgreSQL's
row locks.
Leases are written only through the functions of `migrations/functions_0002_leases.sql`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import BigInteger, Column, DateTime, String, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

# PostgreSQL's integer and bigint: a larger number is a client's mistake (422), not a 500.
INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1


class SubjectKind(StrEnum):
    USER = "user"
    TEAM = "team"


class Period(StrEnum):
    DAY = "day"
    MONTH = "month"


def _patterns() -> Column[list[str] | None]:
    return Column(ARRAY(String), nullable=True)


class Limits(SQLModel):
    """What a contract may set. None: not set here (a default or no limit applies)."""

    models: list[str] | None = Field(
        default=None, sa_column=_patterns(), description="model name patterns (fnmatch)"
    )
    runtimes: list[str] | None = Field(default=None, sa_column=_patterns())
    images: list[str] | None = Field(
        default=None,
        sa_column=_patterns(),
        description="image patterns (fnmatch) a ModelServe's spec.image may name",
    )
    namespaces: list[str] | None = Field(default=None, sa_column=_patterns())
    max_replicas: int | None = Field(default=None, ge=0, le=INT_MAX, description="per server")
    max_gpus: int | None = Field(
        default=None, ge=0, le=INT_MAX, description="in total, all servers"
    )
    max_servers: int | None = Field(default=None, ge=0, le=INT_MAX)
    max_budget: int | None = Field(
        default=None, ge=0, le=INT_MAX, description="scaling budget per request"
    )
    requests_per_minute: int | None = Field(default=None, ge=0, le=INT_MAX)
    tokens_per_minute: int | None = Field(default=None, ge=0, le=BIGINT_MAX, sa_type=BigInteger)
    token_budget: int | None = Field(default=None, ge=0, le=BIGINT_MAX, sa_type=BigInteger)
    budget_period: Period | None = Field(default=None, sa_type=String)
    downloads: bool | None = Field(
        default=None, description="may download models into the platform's store"
    )
    rate_limit_exempt_own_servers: bool | None = Field(
        default=None,
        description=(
            "inference on a server of the caller (its owner) or of one of the caller's "
            "teams is not held to requests_per_minute nor tokens_per_minute (still counted "
            "in the token budget and the usage)"
        ),
    )


class Contract(Limits, table=True):
    __tablename__ = "contracts"
    __table_args__ = (UniqueConstraint("kind", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: SubjectKind = Field(sa_type=String)
    name: str
    updated_at: dt.datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), server_default=func.now(), nullable=False),
    )


class Counter(SQLModel, table=True):
    """Requests or tokens of one scope (`user:alice`, `team:nlp`) in one time window."""

    __tablename__ = "counters"

    scope: str = Field(primary_key=True)
    metric: str = Field(primary_key=True)  # requests/minute, tokens/minute, tokens/day, …
    window_start: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    used: int = Field(default=0, sa_type=BigInteger)
    reserved: int = Field(default=0, sa_type=BigInteger)


class Reservation(SQLModel, table=True):
    """Tokens held for an inference request until its usage is recorded. One that expires
    unsettled is charged (its tokens counted as used) and kept, marked charged, until
    `expires_at` again (`store.RECEIPT_DAYS` later), so that a late usage record corrects
    it rather than counting the request twice."""

    __tablename__ = "reservations"

    id: uuid.UUID = Field(primary_key=True)
    scopes: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    metrics: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    window_starts: list[dt.datetime] = Field(
        sa_column=Column(ARRAY(DateTime(timezone=True)), nullable=False)
    )
    tokens: int = Field(sa_type=BigInteger)
    expires_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), index=True))
    # Whose request it is, for the usage of a charged one (None: made by an older release).
    subject: str | None = None
    team: str | None = None
    model: str | None = None
    # When it expired unsettled and was charged; None while it is held.
    charged_at: dt.datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class Lease(SQLModel, table=True):
    """A slice of one limited counter (scope, metric, window) granted to one holder (a
    gateway process), held in the counter's `reserved` until usage records settle it or
    the holder gives back what it did not take. One not given back by `expires_at`, or
    given back but not fully settled by then, is charged: what it still holds becomes
    used (`charged_at`), and it is kept until `expires_at` again so that late records
    correct it. Written only by the functions of migrations/functions_0002_leases.sql."""

    __tablename__ = "leases"

    id: uuid.UUID = Field(primary_key=True)
    holder: str
    scope: str
    metric: str
    window_start: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    granted: int = Field(sa_type=BigInteger)
    # What the holder says its requests took, when it gave the lease back; None before.
    taken: int | None = Field(default=None, sa_type=BigInteger)
    # The holds of the usage records that settled it so far.
    settled: int = Field(default=0, sa_type=BigInteger)
    expires_at: dt.datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )
    charged_at: dt.datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class Server(SQLModel, table=True):
    """The ledger of servers (ModelServes) per owner: what serve decisions count."""

    __tablename__ = "servers"

    namespace: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    owner: str = Field(index=True)
    team: str = Field(default="", index=True)
    replicas: int
    # Per replica, every GPU of it: a replica of a model over several nodes is a group of
    # pods, and this is the GPUs of all of them (spec.resources.gpus x nodes).
    gpus: int
    model: str
    runtime: str
    # Seen in the cluster; a server decided on but never seen is dropped after a grace time.
    confirmed: bool = False
    updated_at: dt.datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), server_default=func.now(), nullable=False),
    )


class Usage(SQLModel, table=True):
    """Requests and tokens per day, user, team (empty for none) and model."""

    __tablename__ = "usage"

    day: dt.date = Field(primary_key=True)
    subject: str = Field(primary_key=True)
    team: str = Field(primary_key=True)
    model: str = Field(primary_key=True)
    requests: int = Field(default=0, sa_type=BigInteger)
    prompt_tokens: int = Field(default=0, sa_type=BigInteger)
    completion_tokens: int = Field(default=0, sa_type=BigInteger)


class UsageReceipt(SQLModel, table=True):
    """The id of a usage record already counted: a sender that retries one it is unsure
    about (its answer lost, a lease run out) has it counted once. Kept for
    `store.RECEIPT_DAYS` days."""

    __tablename__ = "usage_receipts"

    id: uuid.UUID = Field(primary_key=True)
    recorded_at: dt.datetime | None = Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True), server_default=func.now(), nullable=False, index=True
        ),
    )
