"""What someone waiting for a job needs: when to stop, and the error of waiting too long."""

from __future__ import annotations

from modelserve.client.errors import ModelServeError
from modelserve.client.jobs.answers import Job, TypedJob


def timed_out(job: Job | TypedJob, timeout: float) -> ModelServeError:
    """`timeout`, with where the job stood (its JSON in `details`)."""
    return ModelServeError(
        "timeout",
        f"job {job.id if isinstance(job, Job) else job.job_id} still {job.status} after"
        f" {timeout:g} s ({job.progress.done + job.progress.failed}/{job.progress.total}"
        " items finished)",
        None,
        job.model_dump(mode="json"),
    )
