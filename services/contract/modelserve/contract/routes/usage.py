"""Usage: recorded by the gateway after each inference, read per user or team."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from modelserve.common.auth import Caller, ServiceOrAdmin
from modelserve.contract import usage_records
from modelserve.contract.deps import DeciderDep, readable
from modelserve.contract.usage_records import Recorded, UsageRecord

router = APIRouter(tags=["usage"])


class UsageBatch(BaseModel):
    records: list[UsageRecord] = Field(min_length=1, max_length=1000)


class BatchRecorded(BaseModel):
    # One per record, in the order sent.
    results: list[Recorded]


class ModelUsage(BaseModel):
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


class UsageReport(BaseModel):
    user: str | None
    team: str | None
    period: Literal["day", "month"]
    since: dt.date
    requests: int
    prompt_tokens: int
    completion_tokens: int
    models: list[ModelUsage]


class DayUsage(BaseModel):
    day: dt.date
    requests: int
    prompt_tokens: int
    completion_tokens: int


class DailyUsage(BaseModel):
    user: str | None
    team: str | None
    days: int
    since: dt.date
    until: dt.date  # today (UTC)
    requests: int
    prompt_tokens: int
    completion_tokens: int
    # One entry per UTC day from `since` to `until`, oldest first; zeros for days unused.
    series: list[DayUsage]


@router.post("/usage", response_model_exclude_none=True)
async def record_usage(body: UsageRecord, _: ServiceOrAdmin, decider: DeciderDep) -> Recorded:
    (result,) = await usage_records.record(decider.store, decider.book, [body])
    return result


@router.post("/usage/batch", response_model_exclude_none=True)
async def record_usage_batch(
    body: UsageBatch, _: ServiceOrAdmin, decider: DeciderDep
) -> BatchRecorded:
    """Up to 1,000 records in one transaction (one SQL call, set-based): the gateway's
    usage outbox sends its rows this way. A record counted before, or earlier in the same
    batch, is a duplicate and counts nothing."""
    results = await usage_records.record(decider.store, decider.book, body.records)
    return BatchRecorded(results=results)


@router.get("/usage")
async def read_usage(
    claims: Caller,
    decider: DeciderDep,
    period: Literal["day", "month"] = "month",
    user: str | None = None,
    team: str | None = None,
) -> UsageReport:
    """Totals since the start of this UTC day or month: your own by default; a team's
    for its members; anyone's for admins."""
    user, team = readable(claims, user, team)
    today = await decider.store.today()
    since = today if period == "day" else today.replace(day=1)
    rows = await decider.store.usage(subject=user, team=team, since=since)
    models = [ModelUsage.model_validate(row) for row in rows]
    return UsageReport(
        user=user,
        team=team,
        period=period,
        since=since,
        requests=sum(m.requests for m in models),
        prompt_tokens=sum(m.prompt_tokens for m in models),
        completion_tokens=sum(m.completion_tokens for m in models),
        models=models,
    )


@router.get("/usage/daily")
async def read_daily_usage(
    claims: Caller,
    decider: DeciderDep,
    days: Annotated[int, Query(ge=1, le=90, description="UTC days up to today")] = 30,
    user: str | None = None,
    team: str | None = None,
) -> DailyUsage:
    """Requests and tokens per UTC day over the last `days` days, today included, one
    entry a day (zeros for days without use): whose as for GET /usage."""
    user, team = readable(claims, user, team)
    rows = await decider.store.daily_usage(subject=user, team=team, days=days)
    series = [DayUsage.model_validate(row) for row in rows]
    return DailyUsage(
        user=user,
        team=team,
        days=days,
        since=series[0].day,
        until=series[-1].day,
        requests=sum(d.requests for d in series),
        prompt_tokens=sum(d.prompt_tokens for d in series),
        completion_tokens=sum(d.completion_tokens for d in series),
        series=series,
    )
