"""The jobs routes as `Call`s (method, path, query, body and the parser of the answer),
pure like `modelserve.client.calls`: the sync and async clients only send them."""

from __future__ import annotations

from modelserve.client.calls import Call, list_of, path_segment, query_of
from modelserve.client.jobs.answers import Job, JobStats


def list_jobs(
    *,
    type: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> Call[list[Job]]:
    query = query_of(type=type, status=status, limit=limit, offset=offset)
    return Call("GET", "/jobs", list_of(Job), query)


def job_stats() -> Call[JobStats]:
    return Call("GET", "/jobs/stats", JobStats.model_validate)


def get_job(job_id: str) -> Call[Job]:
    return Call("GET", f"/jobs/{path_segment(job_id)}", Job.model_validate)


def cancel_job(job_id: str) -> Call[Job]:
    return Call("POST", f"/jobs/{path_segment(job_id)}/cancel", Job.model_validate)
