"""Model records: what is in the platform store, ready to serve."""

from __future__ import annotations

from fastapi import APIRouter

from modelserve.common.auth import Caller
from modelserve.common.errors import ApiError
from modelserve.download.deps import JobsDep
from modelserve.download.tables import ModelRecord

router = APIRouter(tags=["models"])


@router.get("/models")
async def list_models(_: Caller, jobs: JobsDep) -> list[ModelRecord]:
    """Every model downloaded and verified, by name."""
    return await jobs.models()


@router.get("/models/{model_id}")
async def get_model(model_id: str, _: Caller, jobs: JobsDep) -> ModelRecord:
    record = await jobs.model(model_id)
    if record is None:
        raise ApiError(404, "model_not_found", f"no model {model_id} in the platform store")
    return record
