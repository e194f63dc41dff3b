"""/data_gen/jobs: queue a Self-Instruct job, read one (with its shards), list the
caller's, resume one that stopped short."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from starlette.responses import StreamingResponse

from modelserve.common.errors import ApiError
from modelserve.common.objects import ObjectStore, StoreError
from modelserve.common.tokens import Claims
from modelserve.jobs.datagen.examples import Example
from modelserve.jobs.datagen.plan import (
    KIND,
    MAX_ITEMS,
    DataGenSpec,
    PathRefused,
    ResumeRefused,
    item_count,
    item_inputs,
    resolve_key,
)
from modelserve.jobs.datagen.resume import (
    Resumer,
    output_lock,
    output_taken,
    resume,
    rng_for,
)
from modelserve.jobs.datagen.seeds import (
    MAX_SEED_FILE_BYTES,
    BadSeeds,
    default_seeds,
    parse_seed_lines,
    seed,
)
from modelserve.jobs.datagen.views import (
    DataGenConfig,
    DataGenJob,
    DataGenRequest,
    view,
)
from modelserve.jobs.deps import CallerDep, StoreDep, visible_to
from modelserve.jobs.files.transfers import read_object
from modelserve.jobs.store import Job, JobStore

router = APIRouter(prefix="/data_gen/jobs", tags=["data generation"])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _platform(request: Request) -> tuple[ObjectStore, str]:
    objects: ObjectStore | None = request.app.state.objects
    if objects is None:
        raise ApiError(
            503, "store_unavailable", "this jobs service has no platform store for shards"
        )
    return objects, str(request.app.state.settings.store_bucket)


def _key(path: str, claims: Claims, bucket: str) -> str:
    try:
        return resolve_key(path, user=claims.sub, is_admin=claims.is_admin, bucket=bucket)
    except PathRefused as refused:
        raise ApiError(refused.status, refused.code, str(refused)) from refused


async def _seed_file(objects: ObjectStore, bucket: str, key: str) -> list[Example]:
    try:
        info = await asyncio.to_thread(objects.stat, bucket, key)
        if info.size > MAX_SEED_FILE_BYTES:
            raise ApiError(
                400, "invalid_seeds", f"a seed file has at most {MAX_SEED_FILE_BYTES} bytes"
            )
        data = await asyncio.to_thread(objects.read, bucket, key, 0, info.size)
    except StoreError as error:
        if error.code == "object_not_found":
            raise ApiError(
                400, "seed_file_not_found", f"no seed file s3://{bucket}/{key}"
            ) from error
        raise ApiError(503, "store_unavailable", str(error)) from error
    try:
        return parse_seed_lines(data.decode("utf-8").splitlines())
    except UnicodeDecodeError as error:
        raise ApiError(400, "invalid_seeds", "the seed file is not UTF-8 text") from error
    except BadSeeds as error:
        raise ApiError(400, "invalid_seeds", f"s3://{bucket}/{key}: {error}") from error


async def _seed_set(
    config: DataGenConfig, claims: Claims, objects: ObjectStore, bucket: str
) -> tuple[list[Example], str]:
    """The job's seed set and where it came from: inline, a file, or the shipped one."""
    if config.seed_tasks is not None and config.seed_file is not None:
        raise ApiError(400, "invalid_seeds", "give `seed_tasks` or `seed_file`, not both")
    if config.seed_tasks is not None:
        try:
            return [seed(v, f"seed_tasks[{i}]") for i, v in enumerate(config.seed_tasks)], "inline"
        except BadSeeds as error:
            raise ApiError(400, "invalid_seeds", str(error)) from error
    if config.seed_file is not None:
        key = _key(config.seed_file, claims, bucket)
        return await _seed_file(objects, bucket, key), f"s3://{bucket}/{key}"
    return default_seeds(), "default"


async def _check_free(store: JobStore, objects: ObjectStore, bucket: str, key: str) -> None:
    """409 when another data-generation job writes to `key`, or it holds objects."""
    taken = await output_taken(store.pool, key)
    if taken is None:
        try:
            existing = await asyncio.to_thread(
                lambda: next(iter(objects.objects(bucket, key + "/")), None)
            )
        except StoreError as error:
            raise ApiError(503, "store_unavailable", str(error)) from error
        taken = existing.key if existing else None
    if taken is not None:
        raise ApiError(
            409,
            "output_dir_in_use",
            f"s3://{bucket}/{key} is in use ({taken}): choose another output_dir",
        )


@router.post("", status_code=202)
async def create_job(
    body: DataGenRequest, request: Request, store: StoreDep, claims: CallerDep
) -> DataGenJob:
    """Queue a Self-Instruct job: ceil(num_examples * overgenerate) items, each asking
    `model_id` for one new task; its shards go to `output_dir`."""
    config = body.config
    objects, bucket = _platform(request)
    output_key = _key(config.output_dir, claims, bucket)
    if item_count(config.num_examples, config.overgenerate) > MAX_ITEMS:
        raise ApiError(
            400, "too_many_items", f"num_examples * overgenerate must be at most {MAX_ITEMS} items"
        )
    seeds, source = await _seed_set(config, claims, objects, bucket)
    async with output_lock(store.pool, output_key) as locked:
        if not locked:
            raise ApiError(
                409,
                "output_dir_in_use",
                f"s3://{bucket}/{output_key} is in use (a job for it is being created):"
                " choose another output_dir",
            )
        await _check_free(store, objects, bucket, output_key)
        job = await _create(body, claims, store, seeds, source, bucket, output_key)
    return view(job, _now())


async def _create(
    body: DataGenRequest,
    claims: Claims,
    store: JobStore,
    seeds: list[Example],
    source: str,
    bucket: str,
    output_key: str,
) -> Job:
    """The job and its items (run under `output_lock`, so no other create races it)."""
    config = body.config
    job_id = f"datagen_{uuid.uuid4().hex[:24]}"
    spec = DataGenSpec(
        strategy=body.strategy,
        num_examples=config.num_examples,
        domain=config.domain,
        output_dir=config.output_dir,
        output_key=output_key,
        output_uri=f"s3://{bucket}/{output_key}",
        shard_size=config.shard_size,
        overgenerate=config.overgenerate,
        similarity_threshold=config.similarity_threshold,
        examples_per_prompt=config.examples_per_prompt,
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        seed_source=source,
        seeds=seeds,
    )
    inputs = item_inputs(
        seeds,
        [],
        count=item_count(config.num_examples, config.overgenerate),
        k=config.examples_per_prompt,
        rng=rng_for(job_id, 0),
    )
    return await store.create(
        type=KIND,
        owner=claims.sub,
        team=claims.teams[0] if claims.teams else None,
        model=body.model_id,
        spec=spec.model_dump(),
        inputs=inputs,
        key_id=claims.key_id,
        job_id=job_id,
    )


@router.get("")
async def list_jobs(
    store: StoreDep,
    claims: CallerDep,
    response: Response,
    status: Literal["pending", "running", "done", "failed", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[DataGenJob]:
    """The caller's data-generation jobs (every one for admins), newest first;
    X-Total-Count says how many match in all."""
    jobs, total = await store.page(
        visible_to=visible_to(claims), type=KIND, status=status, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    now = _now()
    return [view(job, now) for job in jobs]


@router.get("/{job_id}")
async def get_job(job_id: str, store: StoreDep, claims: CallerDep) -> DataGenJob:
    """The job: status, progress and, once finished, its shards and their counts."""
    job = await store.get(job_id, visible_to=visible_to(claims))
    if job is None or job.type != KIND:
        raise ApiError(404, "job_not_found", f"no data-generation job {job_id}")
    return view(job, _now())


@router.get("/{job_id}/shards/{name}", response_class=StreamingResponse)
async def shard_content(
    job_id: str, name: str, request: Request, store: StoreDep, claims: CallerDep
) -> StreamingResponse:
    """A shard's JSONL, streamed from the platform store (for callers without access
    to the store itself)."""
    job = await get_job(job_id, store, claims)
    shard = next((shard for shard in job.shards if shard.name == name), None)
    if shard is None:
        raise ApiError(404, "shard_not_found", f"job {job_id} has no shard {name}")
    objects, bucket = _platform(request)
    return StreamingResponse(
        read_object(objects, bucket, shard.key, shard.bytes),
        media_type="application/jsonl",
        headers={"Content-Length": str(shard.bytes)},
    )


@router.post("/{job_id}/resume", status_code=202)
async def resume_job(job_id: str, store: StoreDep, claims: CallerDep) -> DataGenJob:
    """Run a cancelled, failed or short job on: its items not yet run run again, and the
    items the missing examples need are added; its shards are written again (the
    examples kept before stay, in the same order) when it finishes."""
    try:
        resumer = Resumer(
            visible_to=visible_to(claims),
            sub=claims.sub,
            key_id=claims.key_id,
            team=claims.teams[0] if claims.teams else None,
        )
        job = await resume(store.pool, job_id, resumer)
    except ResumeRefused as refused:
        raise ApiError(409, refused.code, str(refused)) from refused
    if job is None:
        raise ApiError(404, "job_not_found", f"no data-generation job {job_id}")
    return view(job, _now())
