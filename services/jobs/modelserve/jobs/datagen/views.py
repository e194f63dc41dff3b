"""What the data-generation routes take and answer (seed 003's fields), and the pure
builders between them and the engine's jobs."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelserve.jobs.datagen.plan import MAX_EXAMPLES, DataGenSpec
from modelserve.jobs.datagen.seeds import MAX_SEEDS
from modelserve.jobs.progress import Progress, job_progress
from modelserve.jobs.store import Job


class DataGenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_examples: int = Field(ge=1, le=MAX_EXAMPLES)
    domain: str | None = Field(default=None, min_length=1, max_length=200)
    output_dir: str = Field(min_length=1, max_length=512)
    seed_tasks: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, max_length=MAX_SEEDS
    )
    seed_file: str | None = Field(default=None, min_length=1, max_length=512)
    shard_size: int = Field(default=1000, ge=1, le=1_000_000)
    overgenerate: float = Field(default=2.0, ge=1.0, le=20.0)
    similarity_threshold: float = Field(default=0.7, gt=0.0, le=1.0)
    examples_per_prompt: int = Field(default=3, ge=1, le=16)
    max_tokens: int = Field(default=256, ge=8, le=4096)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)


class DataGenRequest(BaseModel):
    """POST /data_gen/jobs, as seed 003 sends it."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1, max_length=256)
    strategy: Literal["self_instruct"]
    config: DataGenConfig


class Shard(BaseModel):
    name: str
    key: str
    uri: str
    examples: int
    bytes: int


class SeedSet(BaseModel):
    source: str
    count: int


class DataGenJob(BaseModel):
    job_id: str
    type: str
    model_id: str | None
    strategy: str
    status: str
    config: dict[str, Any]
    output_uri: str
    seed_set: SeedSet
    progress: Progress
    examples: int | None
    """Examples kept, once the job has finished (None before)."""
    short: bool | None
    """Fewer examples kept than asked for (resume to make the rest)."""
    shards: list[Shard]
    rejected: dict[str, int]
    items_failed: int | None
    resumes: int
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str | None


def view(job: Job, now: dt.datetime) -> DataGenJob:
    spec = DataGenSpec.model_validate(job.spec)
    result = job.result or {}
    return DataGenJob(
        job_id=job.id,
        type=job.type,
        model_id=job.model,
        strategy=spec.strategy,
        status=job.status,
        config=spec.model_dump(
            include={
                "num_examples",
                "domain",
                "output_dir",
                "shard_size",
                "overgenerate",
                "similarity_threshold",
                "examples_per_prompt",
                "max_tokens",
                "temperature",
            }
        ),
        output_uri=spec.output_uri,
        seed_set=SeedSet(source=spec.seed_source, count=len(spec.seeds)),
        progress=job_progress(job, now),
        examples=result.get("examples"),
        short=result.get("short"),
        shards=[Shard.model_validate(shard) for shard in result.get("shards", [])],
        rejected=result.get("rejected", {}),
        items_failed=result.get("items_failed"),
        resumes=spec.resumes,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
    )
