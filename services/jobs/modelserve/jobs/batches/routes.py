"""/v1/batches: create, get, list and cancel batches, per caller (a user sees their own,
admins and services every one: 404 for the others')."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, field_validator

from modelserve.jobs.batches.lines import (
    LINE_MAX_BYTES,
    Endpoint,
    TooManyRequests,
    batch_items,
    item_model,
    storable_text,
)
from modelserve.jobs.batches.records import (
    BATCH_ID_PATTERN,
    JOB_TYPE,
    create_failed,
    is_batch_id,
    new_batch_id,
    page_batches,
)
from modelserve.jobs.batches.views import BatchList, BatchObject, batch_list, batch_object
from modelserve.jobs.deps import CallerDep, StoreDep, visible_to
from modelserve.jobs.files.deps import ObjectsDep, RecordsDep, SettingsDep
from modelserve.jobs.files.records import is_file_id
from modelserve.jobs.files.transfers import read_lines
from modelserve.jobs.openai_errors import OpenAIError, OpenAIRoute
from modelserve.jobs.store import Job, JobStore

router = APIRouter(prefix="/v1/batches", tags=["batches"], route_class=OpenAIRoute)


class BatchCreate(BaseModel):
    input_file_id: str
    endpoint: Endpoint
    completion_window: Literal["24h"]
    # null as OpenAI takes it (the openai client sends `metadata=None` as null): none.
    metadata: (
        Annotated[dict[str, Annotated[str, Field(max_length=512)]], Field(max_length=16)] | None
    ) = None

    @field_validator("metadata")
    @classmethod
    def _storable(cls, metadata: dict[str, str] | None) -> dict[str, str] | None:
        """PostgreSQL keeps no NUL character nor lone surrogate (jsonb refuses them)."""
        if metadata is None:
            return None
        if any(len(key) > 64 for key in metadata):
            raise ValueError("a key of metadata is at most 64 characters, as OpenAI's")
        if not all(storable_text(text) for pair in metadata.items() for text in pair):
            raise ValueError("keys and values hold no NUL character nor lone surrogate")
        return metadata


@dataclass(frozen=True)
class Owner:
    """Whose batch it is: its items run as `name`, with the API key it was created with."""

    name: str
    team: str | None
    key_id: str | None


def not_found(batch_id: str) -> OpenAIError:
    return OpenAIError(404, f"No such Batch object: {batch_id}", code="batch_not_found", param="id")


async def _with_model(items: AsyncIterator[dict[str, Any]]) -> tuple[str | None, list[Any]]:
    """The model of the first request that can be sent, and the items read to find it."""
    read: list[Any] = []
    async for item in items:
        read.append(item)
        model = item_model(item)
        if model is not None:
            return model, read
    return None, read


async def _chain(first: list[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for value in first:
        yield value
    async for value in rest:
        yield value


@router.post("")
async def create_batch(
    request: BatchCreate,
    claims: CallerDep,
    store: StoreDep,
    records: RecordsDep,
    objects: ObjectsDep,
    settings: SettingsDep,
) -> BatchObject:
    """A batch of the requests in `input_file_id` (a file of purpose "batch"), each line
    an item of a job of type `batch`, copied in as the file is read."""
    known = is_file_id(request.input_file_id)
    file = await records.get(request.input_file_id, who=visible_to(claims)) if known else None
    if file is None:
        raise OpenAIError(
            404,
            f"No such File object: {request.input_file_id}",
            code="file_not_found",
            param="input_file_id",
        )
    if file.purpose != "batch":
        raise OpenAIError(
            400,
            f"the file {file.id} has purpose {file.purpose!r}, not 'batch'",
            code="invalid_file",
            param="input_file_id",
        )
    batch_id = new_batch_id()
    spec = {
        "endpoint": request.endpoint,
        "completion_window": request.completion_window,
        "metadata": request.metadata or None,
        "input_file_id": file.id,
    }
    owner = Owner(claims.sub, claims.teams[0] if claims.teams else None, claims.key_id)
    lines = read_lines(objects, settings.store_bucket, file.key, file.bytes, LINE_MAX_BYTES)
    items = batch_items(lines, request.endpoint, settings.batch_max_requests)
    try:
        model, first = await _with_model(items)
        job = await store.create(
            type=JOB_TYPE,
            model=model,
            spec=spec,
            inputs=_chain(first, items),
            job_id=batch_id,
            owner=owner.name,
            team=owner.team,
            key_id=owner.key_id,
        )
    except TooManyRequests as error:
        job = await _failed(store, batch_id, spec, owner, "too_many_requests", str(error))
    except ValueError:
        job = await _failed(store, batch_id, spec, owner, "empty_file", "the file has no requests")
    return batch_object(job)


async def _failed(
    store: JobStore,
    batch_id: str,
    spec: dict[str, Any],
    owner: Owner,
    code: str,
    message: str,
) -> Job:
    error = {"code": code, "message": message, "param": "input_file_id", "line": None}
    return await create_failed(
        store.pool,
        batch_id=batch_id,
        owner=owner.name,
        team=owner.team,
        key_id=owner.key_id,
        spec=spec,
        error=error,
    )


@router.get("")
async def list_batches(
    claims: CallerDep,
    store: StoreDep,
    after: Annotated[str | None, Query(pattern=BATCH_ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BatchList:
    """The caller's batches (every one for admins), newest first."""
    jobs, has_more = await page_batches(
        store.pool, who=visible_to(claims), after=after, limit=limit
    )
    return batch_list(jobs, has_more)


async def _batch(store: JobStore, batch_id: str, who: str | None) -> Job:
    if not is_batch_id(batch_id):
        raise not_found(batch_id)
    job = await store.get(batch_id, visible_to=who)
    if job is None or job.type != JOB_TYPE:
        raise not_found(batch_id)
    return job


@router.get("/{batch_id}")
async def get_batch(batch_id: str, claims: CallerDep, store: StoreDep) -> BatchObject:
    return batch_object(await _batch(store, batch_id, visible_to(claims)))


@router.post("/{batch_id}/cancel")
async def cancel_batch(batch_id: str, claims: CallerDep, store: StoreDep) -> BatchObject:
    """Cancel a batch that has not finished: requests not yet sent never are, running
    ones are stopped; it is `cancelling` until its files are written. 409 for a batch
    that had finished."""
    who = visible_to(claims)
    await _batch(store, batch_id, who)
    job = await store.cancel(batch_id, visible_to=who)
    if job is None:
        raise not_found(batch_id)
    if job.status != "cancelled":
        raise OpenAIError(
            409,
            f"the batch {batch_id} is {batch_object(job).status} and cannot be cancelled",
            code="batch_not_cancellable",
        )
    return batch_object(job)
