"""Model records: what is in the platform store, ready to serve (downloaded or
registered)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from modelserve.common.auth import Caller
from modelserve.common.errors import ApiError
from modelserve.download.access import visible_to
from modelserve.download.deps import JobsDep, RegistryDep
from modelserve.download.registration import parse_tags
from modelserve.download.sources import TEXT_PATTERN, InvalidSource, is_model_id
from modelserve.download.tables import ModelRecord

router = APIRouter(tags=["models"])


@router.get("/models")
async def list_models(
    claims: Caller,
    registry: RegistryDep,
    response: Response,
    name: Annotated[str | None, Query(min_length=1, max_length=256, pattern=TEXT_PATTERN)] = None,
    tag: Annotated[list[str] | None, Query(description="repeatable or comma-separated")] = None,
    origin: Literal["download", "register"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ModelRecord]:
    """The models downloaded or registered, by name then age: every one for admins and
    services, those one asked for (or registered) for users. Filters: `name`, every `tag`
    given, `origin`. X-Total-Count says how many match in all."""
    try:
        tags = parse_tags(tag)
    except InvalidSource as error:
        raise ApiError(422, error.code, str(error)) from error
    records, total = await registry.models(
        visible_to=visible_to(claims),
        name=name,
        tags=tags,
        origin=origin,
        limit=limit,
        offset=offset,
    )
    response.headers["X-Total-Count"] = str(total)
    return records


@router.get("/models/{model_id}")
async def get_model(model_id: str, claims: Caller, jobs: JobsDep) -> ModelRecord:
    """One model record; 404 for one the caller may not see, as for one that is not."""
    visible = visible_to(claims)
    record = await jobs.model(model_id, visible_to=visible) if is_model_id(model_id) else None
    if record is None:
        raise ApiError(404, "model_not_found", f"no model {model_id} in the platform store")
    return record
