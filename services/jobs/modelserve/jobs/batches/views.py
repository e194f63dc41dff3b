"""OpenAI's Batch object, built from its job's row (pure).

The engine's states map to OpenAI's statuses as docs/batches.md explains: a pending job
is `validating` (its lines were checked when it was created; no request has started), a
running one `in_progress`; a job whose items have all finished is `finalizing` until its
files are written (`jobs.result`), then `completed` (also when every request failed:
those are in the error file, as OpenAI does); a cancelled job is `cancelling` until its
running requests have stopped and its files are written, then `cancelled`. `failed` is a
batch whose input file could not be used at all (`errors`). Nothing expires."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel

from modelserve.jobs.store import Job

WINDOW = dt.timedelta(hours=24)

Status = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class BatchError(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: Status
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None = None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, str] | None
    usage: dict[str, Any] | None


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


def batch_status(job: Job) -> Status:
    written = job.result is not None
    if job.spec.get("errors"):
        return "failed"
    if job.status == "pending":
        return "validating"
    if job.status == "running":
        return "in_progress"
    if job.status == "cancelled":
        return "cancelled" if written else "cancelling"
    return "completed" if written else "finalizing"


def _epoch(moment: dt.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _usage(result: dict[str, Any]) -> dict[str, Any] | None:
    usage = result.get("usage")
    if not isinstance(usage, dict):
        return None
    return {
        **usage,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def batch_object(job: Job) -> BatchObject:
    spec, result = job.spec, job.result or {}
    status = batch_status(job)
    ended = job.status in ("done", "failed") and status != "failed"
    cancelled = job.status == "cancelled"
    errors = spec.get("errors")
    return BatchObject(
        id=job.id,
        endpoint=spec["endpoint"],
        model=job.model,
        errors=BatchErrors(data=[BatchError(**e) for e in errors]) if errors else None,
        input_file_id=spec["input_file_id"],
        completion_window=spec["completion_window"],
        status=status,
        output_file_id=result.get("output_file_id"),
        error_file_id=result.get("error_file_id"),
        created_at=int(job.created_at.timestamp()),
        in_progress_at=_epoch(job.started_at),
        expires_at=int((job.created_at + WINDOW).timestamp()),
        finalizing_at=_epoch(job.finished_at) if ended else None,
        completed_at=result.get("finished_at") if ended else None,
        failed_at=int(job.created_at.timestamp()) if status == "failed" else None,
        cancelling_at=_epoch(job.finished_at) if cancelled else None,
        cancelled_at=result.get("finished_at") if cancelled else None,
        request_counts=RequestCounts(total=job.total, completed=job.done, failed=job.failed),
        metadata=spec.get("metadata"),
        usage=_usage(result),
    )


def batch_list(jobs: list[Job], has_more: bool) -> BatchList:
    return BatchList(
        data=[batch_object(job) for job in jobs],
        first_id=jobs[0].id if jobs else None,
        last_id=jobs[-1].id if jobs else None,
        has_more=has_more,
    )
