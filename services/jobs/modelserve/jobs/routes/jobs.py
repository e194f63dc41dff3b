"""/jobs: listing, statistics, one job and its cancellation, per caller."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from modelserve.common.errors import ApiError
from modelserve.jobs.deps import CallerDep, StoreDep, visible_to
from modelserve.jobs.progress import Progress, job_progress
from modelserve.jobs.store import Job, Stats

router = APIRouter(prefix="/jobs", tags=["jobs"])

Status = Literal["pending", "running", "done", "failed", "cancelled"]
JOB_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


class JobView(Job):
    progress: Progress


def view(job: Job, now: dt.datetime) -> JobView:
    return JobView(
        **job.model_dump(),
        progress=job_progress(job, now),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@router.get("")
async def list_jobs(
    store: StoreDep,
    claims: CallerDep,
    response: Response,
    type: Annotated[str | None, Query(pattern=JOB_TYPE_PATTERN)] = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[JobView]:
    """The caller's jobs (every job for admins), newest first; X-Total-Count says how
    many match in all."""
    jobs, total = await store.page(
        visible_to=visible_to(claims), type=type, status=status, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    now = _now()
    return [view(job, now) for job in jobs]


@router.get("/stats")
async def job_stats(store: StoreDep, claims: CallerDep) -> Stats:
    """How many of the caller's jobs (every job for admins) are in each state, and how
    many were created in the last hour."""
    return await store.stats(visible_to=visible_to(claims))


@router.get("/{job_id}")
async def get_job(job_id: str, store: StoreDep, claims: CallerDep) -> JobView:
    job = await store.get(job_id, visible_to=visible_to(claims))
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return view(job, _now())


@router.post("/{job_id}/cancel")
async def cancel_job(job_id: str, store: StoreDep, claims: CallerDep) -> JobView:
    """Cancel a pending or running job: items not yet taken are never run, running ones
    are stopped. A cancelled job answers as it is; 409 when it had finished (done or
    failed) already."""
    job = await store.cancel(job_id, visible_to=visible_to(claims))
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    if job.status != "cancelled":
        raise ApiError(409, "job_finished", f"job {job_id} is {job.status} already")
    return view(job, _now())
