"""Uploads of checkpoints straight into the platform store by presigned URLs: one PUT,
or the parts of an S3 multipart upload, then complete; registered by their upload_id."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from modelserve.common.auth import Caller
from modelserve.common.errors import ApiError
from modelserve.common.objects import ObjectStore, StoreError
from modelserve.common.tokens import Claims
from modelserve.download.deps import PlatformDep, PresignerDep, RegistryDep, SettingsDep
from modelserve.download.presigning import Presigner
from modelserve.download.registration import (
    MAX_UPLOAD_SIZE,
    check_filename,
    check_parts,
    is_upload_id,
    upload_key,
    upload_parts,
)
from modelserve.download.registry import Registry
from modelserve.download.sources import InvalidSource
from modelserve.download.tables import Upload

router = APIRouter(tags=["registry"])


def store_refusal(error: StoreError, what: str) -> ApiError:
    """What the platform store said about `what`, for the caller: a 503 where the store
    (or its configuration) is at fault, a 422 where the request is."""
    if error.retryable or error.code in ("store_credentials", "unknown_bucket"):
        return ApiError(503, "store_unavailable", str(error), {"Retry-After": "1"})
    if error.code == "object_not_found":
        return ApiError(422, "object_not_found", f"there is nothing at {what}")
    return ApiError(422, error.code, str(error))


class UploadRequest(BaseModel):
    filename: str = Field(max_length=255, description="the file's name, e.g. model.gguf")
    size: int = Field(ge=1, le=MAX_UPLOAD_SIZE, description="bytes")


class UploadPart(BaseModel):
    part_number: int
    url: str


class UploadAnswer(BaseModel):
    """An upload, with the URLs to PUT its bytes to while it is open."""

    upload_id: str
    filename: str
    size: int
    uri: str
    state: str  # open, complete, registered
    registered_as: str | None
    # Open: one PUT of the whole file to `url`, or each part (`part_size` bytes, the last
    # the rest) to its URL, keeping each answer's ETag for .../complete.
    method: str = "PUT"
    url: str | None
    part_size: int | None
    parts: list[UploadPart]
    expires_at: dt.datetime | None
    created_by: str


def _answer(upload: Upload, presigner: Presigner) -> UploadAnswer:
    opened = upload.state == "open"
    multipart = upload.multipart_id
    single = opened and multipart is None
    parts = (
        [
            UploadPart(part_number=n, url=presigner.part(upload.bucket, upload.key, multipart, n))
            for n in range(1, upload.parts + 1)
        ]
        if opened and multipart is not None
        else []
    )
    return UploadAnswer(
        upload_id=upload.id,
        filename=upload.filename,
        size=upload.size,
        uri=f"s3://{upload.bucket}/{upload.key}",
        state=upload.state,
        registered_as=upload.registered_as,
        url=presigner.put(upload.bucket, upload.key) if single else None,
        part_size=upload.part_size,
        parts=parts,
        expires_at=dt.datetime.now(dt.UTC) + presigner.expires if opened else None,
        created_by=upload.created_by,
    )


async def own_upload(registry: Registry, upload_id: str, claims: Claims) -> Upload:
    """The upload `upload_id`, if it is the caller's (an admin's or service's: anyone's).
    Another user's is as unknown as one that does not exist: 404, no name."""
    upload = await registry.upload(upload_id) if is_upload_id(upload_id) else None
    if upload is None or (
        upload.created_by != claims.sub and not (claims.is_admin or claims.is_service)
    ):
        raise ApiError(404, "upload_not_found", f"no upload {upload_id}")
    return upload


@router.post("/models/uploads", status_code=201)
async def create_upload(
    body: UploadRequest,
    claims: Caller,
    registry: RegistryDep,
    platform: PlatformDep,
    presigner: PresignerDep,
    settings: SettingsDep,
) -> UploadAnswer:
    """Open an upload into `uploads/<upload_id>/<filename>` of the platform bucket: one
    presigned PUT up to DOWNLOAD_PART_SIZE, else an S3 multipart upload with a presigned
    URL per part."""
    try:
        filename = check_filename(body.filename)
    except InvalidSource as error:
        raise ApiError(422, "invalid_filename", str(error)) from error
    if not (claims.is_admin or claims.is_service):
        opened = await registry.open_uploads(claims.sub)
        if opened >= settings.max_open_uploads:
            raise ApiError(
                429,
                "too_many_uploads",
                f"{claims.sub} has {opened} open uploads, at most {settings.max_open_uploads}: "
                "complete or delete (DELETE /models/uploads/{upload_id}) one first",
            )
    upload_id = uuid.uuid4().hex
    bucket, key = settings.platform_bucket, upload_key(upload_id, filename)
    parts, part_size = upload_parts(body.size, settings.part_size)
    multipart_id = None
    if part_size is not None:
        try:
            multipart_id = await asyncio.to_thread(platform.create_upload, bucket, key)
        except StoreError as error:
            raise store_refusal(error, f"s3://{bucket}/{key}") from error
    upload = await registry.add_upload(
        Upload(
            id=upload_id,
            filename=filename,
            size=body.size,
            bucket=bucket,
            key=key,
            multipart_id=multipart_id,
            part_size=part_size,
            parts=parts,
            created_by=claims.sub,
        )
    )
    return _answer(upload, presigner)


@router.get("/models/uploads/{upload_id}")
async def get_upload(
    upload_id: str, claims: Caller, registry: RegistryDep, presigner: PresignerDep
) -> UploadAnswer:
    """The upload, its URLs signed again while it is open."""
    return _answer(await own_upload(registry, upload_id, claims), presigner)


class CompletedPart(BaseModel):
    part_number: int = Field(ge=1, le=10_000)
    etag: str = Field(min_length=1, max_length=256)


class CompleteRequest(BaseModel):
    parts: list[CompletedPart] = Field(
        default_factory=list, max_length=10_000, description="multipart uploads only"
    )


def _complete(platform: ObjectStore, upload: Upload, etags: list[str] | None) -> int:
    """Complete the multipart upload (if any) and return the size the store holds."""
    if etags is not None and upload.multipart_id is not None:
        platform.complete_upload(upload.bucket, upload.key, upload.multipart_id, etags)
    return platform.stat(upload.bucket, upload.key).size


def _restart(platform: ObjectStore, upload: Upload) -> str | None:
    """Remove what was stored for the upload; a new multipart upload's id, for one."""
    platform.remove(upload.bucket, upload.key)
    if upload.multipart_id is None:
        return None
    return platform.create_upload(upload.bucket, upload.key)


def _drop(platform: ObjectStore, upload: Upload) -> None:
    if upload.state == "open" and upload.multipart_id is not None:
        platform.abort_upload(upload.bucket, upload.key, upload.multipart_id)
    platform.remove(upload.bucket, upload.key)


@router.post("/models/uploads/{upload_id}/complete")
async def complete_upload(
    upload_id: str,
    body: CompleteRequest,
    claims: Caller,
    registry: RegistryDep,
    platform: PlatformDep,
    presigner: PresignerDep,
) -> UploadAnswer:
    """The upload is whole: its parts are joined (multipart), and it may be registered
    (`upload_id` in POST /models/register). Completing it again answers it as it is."""
    upload = await own_upload(registry, upload_id, claims)
    if upload.state != "open":
        return _answer(upload, presigner)
    etags = None
    if upload.multipart_id is not None:
        try:
            etags = check_parts([(p.part_number, p.etag) for p in body.parts], upload.parts)
        except InvalidSource as error:
            raise ApiError(422, error.code, str(error)) from error
    try:
        size = await asyncio.to_thread(_complete, platform, upload, etags)
    except StoreError as error:
        if error.code == "object_not_found":
            raise ApiError(
                409,
                "upload_not_received",
                f"nothing was uploaded for {upload_id} yet: PUT the file to its URL first",
            ) from error
        if error.retryable or error.code in ("store_credentials", "unknown_bucket"):
            raise store_refusal(error, upload.key) from error
        raise ApiError(422, "upload_not_completed", str(error)) from error
    if size != upload.size:
        # Nothing but the declared size may be registered: the upload stays open, to be
        # sent again (a multipart one as a new multipart upload, with new part URLs).
        try:
            multipart_id = await asyncio.to_thread(_restart, platform, upload)
        except StoreError as error:
            raise store_refusal(error, upload.key) from error
        await registry.reopen_upload(upload_id, multipart_id)
        raise ApiError(
            422,
            "upload_size_mismatch",
            f"the store holds {size} bytes for upload {upload_id}, which declared {upload.size}:"
            f" it stays open; send the file again (GET /models/uploads/{upload_id})",
        )
    completed = await registry.complete_upload(upload_id, size)
    if completed is None:  # completed meanwhile by another request
        completed = await own_upload(registry, upload_id, claims)
    return _answer(completed, presigner)


@router.delete("/models/uploads/{upload_id}", status_code=204)
async def delete_upload(
    upload_id: str, claims: Caller, registry: RegistryDep, platform: PlatformDep
) -> Response:
    """Give up an open or complete upload: its multipart upload is aborted and what was
    stored removed. 409 `upload_registered` for one that is registered."""
    upload = await own_upload(registry, upload_id, claims)
    if upload.state not in ("open", "complete"):
        raise ApiError(
            409, "upload_registered", f"upload {upload_id} is registered as {upload.registered_as}"
        )
    try:
        await asyncio.to_thread(_drop, platform, upload)
    except StoreError as error:
        raise store_refusal(error, upload.key) from error
    await registry.drop_upload(upload_id)
    return Response(status_code=204)
