"""A job's progress as people read it: done out of total, items per second, time left.
Pure: the caller gives the clock."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from modelserve.jobs.store import Job


class Progress(BaseModel):
    total: int
    done: int
    failed: int
    fraction: float
    """Finished items (done or failed) out of all; 1.0 for a job of no items."""
    rate: float | None
    """Finished items per second since the job started; None before any finished."""
    eta_seconds: float | None
    """Seconds until every item is finished at `rate`; None without a rate, 0 when done."""


def progress(
    *,
    total: int,
    done: int,
    failed: int,
    started_at: dt.datetime | None,
    finished_at: dt.datetime | None,
    now: dt.datetime,
) -> Progress:
    finished = done + failed
    fraction = 1.0 if total == 0 else min(finished / total, 1.0)
    end = finished_at or now
    elapsed = (end - started_at).total_seconds() if started_at is not None else 0.0
    rate = finished / elapsed if finished > 0 and elapsed > 0 else None
    remaining = max(total - finished, 0)
    if remaining == 0:
        eta: float | None = 0.0
    elif rate is None or finished_at is not None:
        eta = None
    else:
        eta = remaining / rate
    return Progress(
        total=total, done=done, failed=failed, fraction=fraction, rate=rate, eta_seconds=eta
    )


def job_progress(job: Job, now: dt.datetime | None = None) -> Progress:
    """The progress of `job` at `now` (the present by default)."""
    return progress(
        total=job.total,
        done=job.done,
        failed=job.failed,
        started_at=job.started_at,
        finished_at=job.finished_at,
        now=now or dt.datetime.now(dt.UTC),
    )
