"""Model records: what is in the platform store, ready to serve."""

from __future__ import annotations

from fastapi import APIRouter

from modelserve.common.auth import Caller
from modelserve.common.errors import ApiError
from modelserve.download.access import visible_to
from modelserve.download.deps import JobsDep
from modelserve.download.sources import is_model_id
from modelserve.download.tables import ModelRecord

router = APIRouter(tags=["models"])


@router.get("/models")
async def list_models(claims: Caller, jobs: JobsDep) -> list[ModelRecord]:
    """The models downloaded and verified, by name: every one for admins and services,
    those one asked for for users."""
    return await jobs.models(visible_to=visible_to(claims))


@router.get("/models/{model_id}")
async def get_model(model_id: str, claims: Caller, jobs: JobsDep) -> ModelRecord:
    """One model record; 404 for one the caller may not see, as for one that is not."""
    visible = visible_to(claims)
    record = await jobs.model(model_id, visible_to=visible) if is_model_id(model_id) else None
    if record is None:
        raise ApiError(404, "model_not_found", f"no model {model_id} in the platform store")
    return record
