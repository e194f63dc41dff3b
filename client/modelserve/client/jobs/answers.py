"""Typed answers of the jobs routes. As in `modelserve.client.answers`, each names the
fields scripts rely on and lets every other field through."""

from __future__ import annotations

import datetime as dt
from typing import Any

from modelserve.client.answers import Answer

FINISHED = ("done", "failed", "cancelled")


class JobProgress(Answer):
    """Where a job stands, as the service counts it: finished items out of `total`,
    items per second since it started, and seconds left at that rate."""

    total: int
    done: int
    failed: int
    fraction: float
    rate: float | None = None
    eta_seconds: float | None = None


class Job(Answer):
    """A job of any type: GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel."""

    id: str
    type: str
    owner: str
    team: str | None = None
    model: str | None = None
    status: str  # pending, running, done, failed, cancelled
    total: int
    done: int
    failed: int
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    spec: dict[str, Any] = {}
    result: dict[str, Any] | None = None
    progress: JobProgress | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class JobStats(Answer):
    """GET /jobs/stats: the caller's jobs (an admin's: all) by state (seed 003)."""

    pending: int
    running: int
    done: int
    failed: int
    jobs_last_hour: int
