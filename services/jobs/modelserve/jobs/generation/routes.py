"""/generate: queue prompts (seed 003's payload, one prompt or a list) and read the
generations back, per caller (admins see every job)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from fastapi import APIRouter
from psycopg_pool import AsyncConnectionPool
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from modelserve.common.database import fetch_all
from modelserve.common.errors import ApiError
from modelserve.jobs.deps import CallerDep, StoreDep, visible_to
from modelserve.jobs.generation.executor import GenerateSpec
from modelserve.jobs.progress import Progress, job_progress
from modelserve.jobs.store import Job

router = APIRouter(prefix="/generate", tags=["generation"])

JOB_TYPE = "generate"
MAX_PROMPTS = 1000


class GenerateRequest(BaseModel):
    """Seed 003's `/generate` body, with the model it runs on (the seed's server had one
    active model; the platform serves many) and optionally several prompts."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str = Field(
        min_length=1, max_length=256, validation_alias=AliasChoices("model", "model_id")
    )
    prompt: str | None = Field(default=None, min_length=1)
    prompts: list[str] | None = Field(default=None, min_length=1, max_length=MAX_PROMPTS)
    max_tokens: int = Field(default=256, ge=1, le=32_768)
    temperature: float = Field(default=0.7, ge=0, le=2)
    top_p: float = Field(default=0.9, gt=0, le=1)
    mode: Literal["normal"] = "normal"

    @model_validator(mode="after")
    def _one_of(self) -> GenerateRequest:
        if (self.prompt is None) == (self.prompts is None):
            raise ValueError("give either `prompt` or `prompts`")
        return self

    def all_prompts(self) -> list[str]:
        return [self.prompt] if self.prompt is not None else list(self.prompts or [])


class GenerateJobView(BaseModel):
    job_id: str
    type: str
    model: str | None
    status: str
    progress: Progress
    created_at: dt.datetime
    finished_at: dt.datetime | None
    error: str | None
    output: str | None
    """The job's output file in the platform store, once written (a moment after the
    job ends; never without a store)."""
    generations: list[dict[str, Any]] | None
    """In prompt order, once the job is done: index, prompt, text, finish_reason, error."""


def generation_view(job: Job, generations: list[dict[str, Any]] | None) -> GenerateJobView:
    return GenerateJobView(
        job_id=job.id,
        type=job.type,
        model=job.model,
        status=job.status,
        progress=job_progress(job),
        created_at=job.created_at,
        finished_at=job.finished_at,
        error=job.error,
        output=(job.result or {}).get("output"),
        generations=generations,
    )


def generation_record(row: dict[str, Any]) -> dict[str, Any]:
    output = row["output"] or {}
    return {
        "index": row["index"],
        "prompt": row["input"]["prompt"],
        "text": output.get("text"),
        "finish_reason": output.get("finish_reason"),
        "error": row["error"] if row["state"] == "failed" else None,
    }


async def generations_of(pool: AsyncConnectionPool, job_id: str) -> list[dict[str, Any]]:
    rows = await fetch_all(
        pool,
        """SELECT index, state, input, output, error FROM job_items
           WHERE job_id = %s AND state IN ('done', 'failed') ORDER BY index""",
        [job_id],
    )
    return [generation_record(row) for row in rows]


@router.post("", status_code=202)
async def queue_generation(
    body: GenerateRequest, store: StoreDep, claims: CallerDep
) -> GenerateJobView:
    """Queue the prompts as one job, run as the caller."""
    spec = GenerateSpec(max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p)
    job = await store.create(
        type=JOB_TYPE,
        owner=claims.sub,
        team=claims.teams[0] if claims.teams else None,
        model=body.model,
        spec=spec.model_dump(),
        inputs=[{"prompt": prompt} for prompt in body.all_prompts()],
        key_id=claims.key_id,
        job_id=f"gen_{uuid.uuid4().hex[:24]}",
    )
    return generation_view(job, None)


@router.get("/{job_id}")
async def get_generation(job_id: str, store: StoreDep, claims: CallerDep) -> GenerateJobView:
    job = await store.get(job_id, visible_to=visible_to(claims))
    if job is None or job.type != JOB_TYPE:
        raise ApiError(404, "job_not_found", f"no generation job {job_id}")
    view = generation_view(job, None)
    if view.status in ("done", "failed", "cancelled"):
        view.generations = await generations_of(store.pool, job.id)
    return view
