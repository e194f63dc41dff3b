"""The registry's routes that the gateway passes to the download service as the caller
(their Authorization header), answers and refusals kept: registering a version, uploading
its checkpoint, and the history of active versions. (`activation.py` has set_active and
active, which also move servers.)"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from modelserve.common.model_versions import HistoryEntry
from modelserve.gateway.auth import Caller, CallerAuthorization
from modelserve.gateway.deps import RegistryDep
from modelserve.gateway.registry.client import RegistrationJob, Upload

router = APIRouter(tags=["registry"])
_TEXT = r"^[^\x00-\x1f\x7f]*$"


class RegisterRequest(BaseModel):
    """A version of a model: its checkpoint in the platform store (`uri`) or uploaded
    (`upload_id`); the download service checks the rest (docs/download.md)."""

    id: str = Field(max_length=256, description="the version's model id, new")
    name: str | None = Field(
        default=None,
        max_length=256,
        description="the model name its versions share; default the GGUF name, else the id",
    )
    source: str | None = Field(default=None, max_length=256, description="a free label")
    tags: str | list[str] | None = Field(default=None, description="'step5000,math' or a list")
    uri: str | None = Field(default=None, max_length=2048)
    upload_id: str | None = Field(default=None, max_length=64)


@router.post("/models/register", status_code=202)
async def register_model(
    body: RegisterRequest, authorization: CallerAuthorization, _: Caller, registry: RegistryDep
) -> RegistrationJob:
    """Register a version: 202 with the job that copies, hashes and records it."""
    return await registry.register(authorization, body.model_dump(exclude_unset=True))


@router.get("/models/registrations/{model_id}")
async def registration(
    model_id: str, authorization: CallerAuthorization, _: Caller, registry: RegistryDep
) -> RegistrationJob:
    """Where a registration stands: state, progress, error (the download service's
    `GET /status/{id}`)."""
    return await registry.registration(authorization, model_id)


class UploadRequest(BaseModel):
    filename: str = Field(max_length=255)
    size: int = Field(ge=1, le=5 << 40)


@router.post("/models/uploads", status_code=201)
async def create_upload(
    body: UploadRequest, authorization: CallerAuthorization, _: Caller, registry: RegistryDep
) -> Upload:
    """Open an upload: one presigned PUT (`url`) or presigned parts (`parts`)."""
    return await registry.create_upload(authorization, body.filename, body.size)


@router.get("/models/uploads/{upload_id}")
async def get_upload(
    upload_id: str, authorization: CallerAuthorization, _: Caller, registry: RegistryDep
) -> Upload:
    """The upload, its URLs signed again while it is open."""
    return await registry.upload(authorization, upload_id)


@router.delete("/models/uploads/{upload_id}", status_code=204)
async def delete_upload(
    upload_id: str, authorization: CallerAuthorization, _: Caller, registry: RegistryDep
) -> Response:
    """An open or completed upload given up: its staging object goes (409 once registered)."""
    await registry.delete_upload(authorization, upload_id)
    return Response(status_code=204)


class CompletedPart(BaseModel):
    part_number: int = Field(ge=1, le=10_000)
    etag: str = Field(min_length=1, max_length=256)


class CompleteRequest(BaseModel):
    parts: list[CompletedPart] = Field(default_factory=list, max_length=10_000)


@router.post("/models/uploads/{upload_id}/complete")
async def complete_upload(
    upload_id: str,
    body: CompleteRequest,
    authorization: CallerAuthorization,
    _: Caller,
    registry: RegistryDep,
) -> Upload:
    """The bytes are all there: join the parts (multipart); then register it."""
    parts: list[dict[str, Any]] = [part.model_dump() for part in body.parts]
    return await registry.complete_upload(authorization, upload_id, parts)


@router.get("/models/history")
async def version_history(
    authorization: CallerAuthorization,
    _: Caller,
    registry: RegistryDep,
    response: Response,
    name: Annotated[str | None, Query(min_length=1, max_length=256, pattern=_TEXT)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[HistoryEntry]:
    """Changes of active versions the caller may see, newest first (X-Total-Count)."""
    page = await registry.history(authorization, name=name, limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(page.total)
    return page.entries
