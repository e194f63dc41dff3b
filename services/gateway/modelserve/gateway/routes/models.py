"""GET /models: the downloaded models the caller may serve."""

from __future__ import annotations

from fastapi import APIRouter

from modelserve.gateway.auth import Caller
from modelserve.gateway.deps import CatalogDep, ContractsDep
from modelserve.gateway.models import ModelRecord, usable_models

router = APIRouter(tags=["models"])


@router.get("/models")
async def list_models(
    claims: Caller, catalog: CatalogDep, contracts: ContractsDep
) -> list[ModelRecord]:
    """The platform store's models (the download service's records) that the caller's
    contract allows; every one for admins, or where no contract service is set."""
    return await usable_models(claims, catalog, contracts)
