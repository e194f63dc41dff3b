"""The contract service's answers that the gateway passes on, typed for its OpenAPI
schema (and the web UI's reading of it); fields it does not know pass through."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Passing(BaseModel):
    model_config = ConfigDict(extra="allow")


class ModelUsage(_Passing):
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


class UsageReport(_Passing):
    """Totals since the start of this UTC day or month, per model."""

    user: str | None
    team: str | None
    period: Literal["day", "month"]
    since: dt.date
    requests: int
    prompt_tokens: int
    completion_tokens: int
    models: list[ModelUsage]


class DayUsage(_Passing):
    day: dt.date
    requests: int
    prompt_tokens: int
    completion_tokens: int


class DailyUsage(_Passing):
    """One entry per UTC day from `since` to `until` (today), oldest first."""

    user: str | None
    team: str | None
    days: int
    since: dt.date
    until: dt.date
    requests: int
    prompt_tokens: int
    completion_tokens: int
    series: list[DayUsage]


class ContractLimits(_Passing):
    """What a contract sets; None: no limit (or, for lists, anything)."""

    models: list[str] | None = None
    runtimes: list[str] | None = None
    namespaces: list[str] | None = None
    # The images a ModelServe's spec.image may name (none when empty: see docs/contract.md).
    images: list[str] | None = None
    max_replicas: int | None = None
    max_gpus: int | None = None
    max_servers: int | None = None
    max_budget: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    token_budget: int | None = None
    budget_period: Literal["day", "month"] | None = None
    downloads: bool | None = None
    rate_limit_exempt_own_servers: bool | None = None


class MyContract(_Passing):
    """Your limits (your contract over the defaults) and your default team's contract."""

    user: str
    limits: ContractLimits
    team: str | None
    team_limits: ContractLimits | None


class SubjectLimits(_Passing):
    """The limits that hold for a user (their contract over the defaults) or a team (its
    contract; None: it has none)."""

    user: str | None
    team: str | None
    limits: ContractLimits | None
