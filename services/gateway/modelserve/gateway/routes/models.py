"""GET /models: the models (downloaded or registered) the caller may serve."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from modelserve.gateway.auth import Caller
from modelserve.gateway.deps import ContractsDep, RegistryDep
from modelserve.gateway.models import ModelRecord, usable_models

router = APIRouter(tags=["models"])


@router.get("/models")
async def list_models(
    claims: Caller,
    registry: RegistryDep,
    contracts: ContractsDep,
    response: Response,
    name: Annotated[
        str | None, Query(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")
    ] = None,
    tag: Annotated[list[str] | None, Query(description="repeatable or comma-separated")] = None,
    origin: Literal["download", "register"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ModelRecord]:
    """The platform store's models (the download service's records) that the caller's
    contract allows, by name then age; every one for admins, or where no contract service
    is set. Filters: `name`, every `tag` given, `origin`; X-Total-Count says how many the
    caller may see in all."""
    usable = await usable_models(
        claims, registry, contracts, name=name, tags=tag or (), origin=origin
    )
    response.headers["X-Total-Count"] = str(len(usable))
    return usable[offset : offset + limit]
