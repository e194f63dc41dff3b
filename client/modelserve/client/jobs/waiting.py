"""What someone waiting for a job needs: when to stop, and the error of waiting too long."""

from __future__ import annotations

from modelserve.client.errors import ModelServeError
from modelserve.client.jobs.answers import Job


def timed_out(job: Job, timeout: float) -> ModelServeError:
    """`timeout`, with where the job stood (its JSON in `details`)."""
    return ModelServeError(
        "timeout",
        f"job {job.id} still {job.status} after {timeout:g} s"
        f" ({job.done + job.failed}/{job.total} items finished)",
        None,
        job.model_dump(mode="json"),
    )
