"""/eval/jobs: queue an evaluation, follow it, read its per-example records, per caller
(admins see every job)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelserve.common.errors import ApiError
from modelserve.common.objects import ObjectStore, StoreError
from modelserve.common.tokens import Claims
from modelserve.jobs.deps import CallerDep, StoreDep, visible_to
from modelserve.jobs.evaluation.datasets import (
    MAX_ITEMS,
    DatasetRefused,
    dataset_items,
    dataset_key,
)
from modelserve.jobs.evaluation.examples import EvalSpec, scaled_by
from modelserve.jobs.evaluation.results import example_page
from modelserve.jobs.files.records import FileRecords
from modelserve.jobs.progress import Progress, job_progress
from modelserve.jobs.store import Job, JobStore

router = APIRouter(prefix="/eval/jobs", tags=["evaluation"])

JOB_TYPE = "eval"
Metric = Literal["accuracy", "avg_loss"]
Algorithm = Literal["best-of-n", "self-consistency", "particle-filtering", "beam-search", "none"]
# Without scaling an evaluation is greedy; a scaled one samples (as bench/scaling_quality.py).
SCALED_TEMPERATURE = 0.8


class EvalRequest(BaseModel):
    """Seed 003's evaluation job, with what the platform adds (scaling, the answer's
    length and pattern)."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=256)
    dataset_ref: str = Field(min_length=1, max_length=1024)
    metrics: list[Metric] = ["accuracy"]
    max_samples: int | None = Field(default=None, ge=1, le=MAX_ITEMS)
    per_example_logging: bool = True
    max_tokens: int = Field(default=256, ge=1, le=32_768)
    temperature: float | None = Field(default=None, ge=0, le=2)
    budget: int | None = Field(default=None, ge=1, le=1024)
    algorithm: Algorithm | None = None
    answer_pattern: str | None = Field(default=None, max_length=1000)

    @field_validator("answer_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"not a regular expression: {error}") from error
        return pattern


class EvalJobView(BaseModel):
    job_id: str
    type: str
    name: str
    model_id: str | None
    status: str
    dataset_ref: str
    dataset: str
    budget: int | None
    algorithm: str | None
    progress: Progress
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str | None
    result: dict[str, Any] | None


def build_spec(body: EvalRequest, dataset: str) -> EvalSpec:
    temperature = body.temperature
    if temperature is None:
        temperature = SCALED_TEMPERATURE if scaled_by(body.budget, body.algorithm) else 0.0
    return EvalSpec(
        name=body.name,
        dataset_ref=body.dataset_ref,
        dataset=dataset,
        metrics=list(body.metrics),
        max_samples=body.max_samples,
        per_example_logging=body.per_example_logging,
        max_tokens=body.max_tokens,
        temperature=temperature,
        budget=body.budget,
        algorithm=body.algorithm,
        answer_pattern=body.answer_pattern,
    )


def eval_view(job: Job) -> EvalJobView:
    """What a caller sees: a job that ended but whose summary is not written yet is
    still `running`, so that a client that waits for `done` finds the result there."""
    spec = EvalSpec.model_validate(job.spec)
    status = job.status
    if status in ("done", "failed") and job.result is None:
        status = "running"
    return EvalJobView(
        job_id=job.id,
        type=job.type,
        name=spec.name,
        model_id=job.model,
        status=status,
        dataset_ref=spec.dataset_ref,
        dataset=spec.dataset,
        budget=spec.budget,
        algorithm=spec.algorithm,
        progress=job_progress(job),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
        result=job.result,
    )


async def _objects(request: Request) -> ObjectStore:
    objects: ObjectStore | None = request.app.state.objects
    if objects is None:
        raise ApiError(503, "store_unavailable", "this jobs service has no platform store")
    return objects


async def _bucket(request: Request) -> str:
    bucket: str = request.app.state.settings.store_bucket
    return bucket


ObjectsDep = Annotated[ObjectStore, Depends(_objects)]
BucketDep = Annotated[str, Depends(_bucket)]


async def visible_eval(store: JobStore, job_id: str, claims: Claims) -> Job:
    job = await store.get(job_id, visible_to=visible_to(claims))
    if job is None or job.type != JOB_TYPE:
        raise ApiError(404, "job_not_found", f"no evaluation job {job_id}")
    return job


async def dataset_of(ref: str, store: JobStore, claims: Claims, bucket: str) -> str:
    """The key of the dataset `ref` names: one of the caller's OpenAI Files (`file-…`,
    uploaded through /v1/files), or a key `dataset_key` allows."""
    if ref.startswith("file-"):
        record = await FileRecords(store.pool).get(ref, who=visible_to(claims))
        if record is None:
            raise ApiError(400, "dataset_not_found", f"no file {ref} of yours")
        return record.key
    try:
        return dataset_key(ref, bucket=bucket, admin=claims.is_admin)
    except DatasetRefused as error:
        raise ApiError(400, "dataset_refused", str(error)) from error


@router.post("", status_code=202)
async def create_eval_job(
    body: EvalRequest, store: StoreDep, claims: CallerDep, objects: ObjectsDep, bucket: BucketDep
) -> EvalJobView:
    """Queue an evaluation: one item per example of the dataset (at most `max_samples`),
    run as the caller."""
    key = await dataset_of(body.dataset_ref, store, claims, bucket)
    try:
        info = await asyncio.to_thread(objects.stat, bucket, key)
    except StoreError as error:
        if error.code == "object_not_found":
            raise ApiError(400, "dataset_not_found", f"no dataset s3://{bucket}/{key}") from error
        raise ApiError(502, "store_error", str(error)) from error
    spec = build_spec(body, f"s3://{bucket}/{key}")
    try:
        job = await store.create(
            type=JOB_TYPE,
            owner=claims.sub,
            team=claims.teams[0] if claims.teams else None,
            model=body.model_id,
            spec=spec.model_dump(),
            inputs=dataset_items(objects, bucket, info, limit=body.max_samples),
            key_id=claims.key_id,
            job_id=f"eval_{uuid.uuid4().hex[:24]}",
        )
    except DatasetRefused as error:
        raise ApiError(400, "dataset_refused", str(error)) from error
    except ValueError as error:
        raise ApiError(400, "empty_dataset", f"s3://{bucket}/{key} has no examples") from error
    except StoreError as error:
        raise ApiError(502, "store_error", str(error)) from error
    return eval_view(job)


@router.get("")
async def list_eval_jobs(
    store: StoreDep,
    claims: CallerDep,
    response: Response,
    status: Literal["pending", "running", "done", "failed", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[EvalJobView]:
    """The caller's evaluation jobs, newest first; X-Total-Count says how many match."""
    jobs, total = await store.page(
        visible_to=visible_to(claims), type=JOB_TYPE, status=status, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return [eval_view(job) for job in jobs]


@router.get("/{job_id}")
async def get_eval_job(job_id: str, store: StoreDep, claims: CallerDep) -> EvalJobView:
    return eval_view(await visible_eval(store, job_id, claims))


@router.get("/{job_id}/examples")
async def get_eval_examples(
    job_id: str,
    store: StoreDep,
    claims: CallerDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The per-example records (as in the job's examples.jsonl) of the examples with
    index offset … offset + limit - 1 that are finished, in index order; available while
    the job runs."""
    job = await visible_eval(store, job_id, claims)
    records = await example_page(store.pool, job.id, offset=offset, limit=limit)
    return {"job_id": job.id, "total": job.total, "offset": offset, "examples": records}
