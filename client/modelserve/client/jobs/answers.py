"""Typed answers of the jobs routes. As in `modelserve.client.answers`, each names the
fields scripts rely on and lets every other field through."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Protocol

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


class Tracked(Protocol):
    """What a progress bar reads of any job's answer."""

    status: str
    progress: JobProgress


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
    progress: JobProgress

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


class TypedJob(Answer):
    """A job as its own type's route answers it (`ROUTE`/{job_id}): what every type has."""

    ROUTE: ClassVar[str]
    job_id: str
    type: str
    status: str
    progress: JobProgress
    created_at: dt.datetime
    finished_at: dt.datetime | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        """Ended, with what the type writes at the end (its result) in the answer."""
        return self.status in FINISHED


# --- evaluation -----------------------------------------------------------------------


class EvalResult(Answer):
    """An evaluation's summary (seed 003's `accuracy`, `total_samples`, `correct`,
    `avg_loss`), and where its per-example log is (`examples`, an s3:// URI)."""

    name: str | None = None
    accuracy: float | None = None
    total_samples: int
    correct: int
    failed: int = 0
    avg_loss: float | None = None
    loss_samples: int = 0
    examples: str | None = None


class EvalJob(TypedJob):
    """POST /eval/jobs, GET /eval/jobs/{id}: `status` stays `running` until `result` is
    written, so a finished one carries it."""

    ROUTE: ClassVar[str] = "/eval/jobs"
    name: str
    model_id: str | None = None
    dataset_ref: str
    dataset: str
    budget: int | None = None
    algorithm: str | None = None
    started_at: dt.datetime | None = None
    result: EvalResult | None = None

    @property
    def finished(self) -> bool:
        """Ended, with its result: a cancelled job's is written a moment after it ends."""
        return self.status in FINISHED and self.result is not None


class EvalExample(Answer):
    """One example's record: the judgement, or the `error` of a line that is no example
    or whose request was refused."""

    index: int
    line: int
    id: Any = None
    messages: list[dict[str, Any]] = []
    expected: str | None = None
    completion: str | None = None
    answer: str | None = None
    correct: bool | None = None
    loss: float | None = None
    tokens: int | None = None
    error: dict[str, Any] | None = None


class EvalExamples(Answer):
    """GET /eval/jobs/{id}/examples: the finished examples of one page, in index order."""

    job_id: str
    total: int
    offset: int
    examples: list[EvalExample]


# --- data generation ------------------------------------------------------------------


class Shard(Answer):
    name: str
    key: str
    uri: str
    examples: int
    bytes: int


class SeedSet(Answer):
    source: str
    count: int


class DataGenJob(TypedJob):
    """POST /data_gen/jobs, GET /data_gen/jobs/{id}: `examples`, `short` and `shards`
    once the job's shards are written."""

    ROUTE: ClassVar[str] = "/data_gen/jobs"
    model_id: str | None = None
    strategy: str
    config: dict[str, Any] = {}
    output_uri: str
    seed_set: SeedSet | None = None
    examples: int | None = None
    short: bool | None = None
    shards: list[Shard] = []
    rejected: dict[str, int] = {}
    items_failed: int | None = None
    resumes: int = 0
    started_at: dt.datetime | None = None

    @property
    def finished(self) -> bool:
        """Ended, and its shards written: a job's `examples` is set a moment after it
        ends, cancelled or not."""
        return self.status in FINISHED and self.examples is not None


# --- queued generation ----------------------------------------------------------------


class GeneratedText(Answer):
    index: int
    prompt: str
    text: str | None = None
    finish_reason: str | None = None
    error: dict[str, Any] | None = None


class Generation(TypedJob):
    """POST /generate, GET /generate/{id}: `generations`, in prompt order, once ended."""

    ROUTE: ClassVar[str] = "/generate"
    model: str | None = None
    output: str | None = None
    generations: list[GeneratedText] | None = None
