"""Registering versions (POST /models/register) and uploading their checkpoints into the
platform store by presigned URLs (POST /models/uploads, then .../complete)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from modelserve.common.auth import Caller
from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims
from modelserve.download.deps import (
    JobsDep,
    PlatformDep,
    PresignerDep,
    RegistryDep,
    SettingsDep,
)
from modelserve.download.objects import ObjectStore, StoreError
from modelserve.download.presigning import Presigner
from modelserve.download.records import DownloadStatus, status
from modelserve.download.registration import (
    MAX_UPLOAD_SIZE,
    check_filename,
    check_parts,
    in_uploads,
    is_upload_id,
    parse_platform_uri,
    parse_tags,
    stored_model,
    upload_key,
    upload_parts,
)
from modelserve.download.registry import ModelExists, Registry, UploadUsed
from modelserve.download.sources import InvalidSource, Source, check_model_id
from modelserve.download.tables import Upload

router = APIRouter(tags=["registry"])
_TEXT = r"^[^\x00-\x1f\x7f]*$"  # no control characters: stored, and shown to people


class RegisterRequest(BaseModel):
    """POST /models/register: a version of a model, from a checkpoint in the platform
    store (`uri`) or an upload (`upload_id`)."""

    id: str = Field(max_length=256, description="the version's model id, new")
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=_TEXT,
        description="the model name its versions share (the served name); default: the "
        "GGUF file's general.name, else the id",
    )
    source: str | None = Field(
        default=None, max_length=256, pattern=_TEXT, description="a free label, e.g. '4090'"
    )
    tags: str | list[str] | None = Field(
        default=None, description="'step5000,math' or a list", max_length=4096
    )
    uri: str | None = Field(
        default=None, max_length=2048, description="s3://<platform bucket>/<key or prefix/>"
    )
    upload_id: str | None = Field(default=None, max_length=64)


def _store_refusal(error: StoreError, what: str) -> ApiError:
    """What the platform store said about `what`, for the caller: a 503 where the store
    (or its configuration) is at fault, a 422 where the request is."""
    if error.retryable or error.code in ("store_credentials", "unknown_bucket"):
        return ApiError(503, "store_unavailable", str(error), {"Retry-After": "1"})
    if error.code == "object_not_found":
        return ApiError(422, "object_not_found", f"there is nothing at {what}")
    return ApiError(422, error.code, str(error))


def _check_exists(platform: ObjectStore, source: Source) -> None:
    if source.key is not None:
        platform.stat(source.bucket, source.key)
    elif next(iter(platform.objects(source.bucket, source.folder)), None) is None:
        raise StoreError("object_not_found", f"nothing under {source.uri}")


async def _uploaded_source(
    registry: Registry, upload_id: str, claims: Claims
) -> tuple[Source, Upload]:
    upload = await _own_upload(registry, upload_id, claims)
    if upload.state == "open":
        raise ApiError(
            409, "upload_not_complete", f"upload {upload_id} is not complete: complete it first"
        )
    if upload.state != "complete":
        raise ApiError(
            409, "upload_registered", f"upload {upload_id} is registered as {upload.registered_as}"
        )
    return Source(upload.bucket, key=upload.key), upload


async def _checked_uri(uri: str, claims: Claims, settings: SettingsDep, jobs: JobsDep) -> Source:
    try:
        source = parse_platform_uri(uri, settings.platform_bucket)
    except InvalidSource as error:
        raise ApiError(422, error.code, str(error)) from error
    if claims.is_admin or claims.is_service:
        return source
    # Users register what is theirs to see: a stored model of their own, or what the
    # platform's operators put outside the models/ and uploads/ prefixes.
    if in_uploads(source):
        raise ApiError(403, "use_upload_id", "register an upload by its upload_id")
    stored = stored_model(source)
    if stored is not None and await jobs.model(stored, visible_to=claims.sub) is None:
        raise ApiError(403, "source_not_visible", f"{uri} is a model {claims.sub} cannot see")
    return source


@router.post("/models/register", status_code=202)
async def register_model(
    body: RegisterRequest,
    claims: Caller,
    jobs: JobsDep,
    registry: RegistryDep,
    platform: PlatformDep,
    settings: SettingsDep,
) -> DownloadStatus:
    """Record a version: copy the checkpoint into `models/<id>/`, computing its SHA-256,
    reading its GGUF header, tagging its objects. 202 with the job (follow it at
    `GET /status/{id}`); 409 `model_exists` for an id that is taken."""
    try:
        model_id = check_model_id(body.id)
        tags = parse_tags(body.tags)
    except InvalidSource as error:
        raise ApiError(422, error.code, str(error)) from error
    if (body.uri is None) == (body.upload_id is None):
        raise ApiError(
            422,
            "invalid_checkpoint",
            "name the checkpoint by exactly one of uri (s3://<platform bucket>/<key or "
            "prefix/>, already in the platform store) and upload_id (POST /models/uploads)",
        )
    privileged = claims.is_admin or claims.is_service
    upload: Upload | None = None
    if body.upload_id is not None:
        source, upload = await _uploaded_source(registry, body.upload_id, claims)
    else:
        assert body.uri is not None
        source = await _checked_uri(body.uri, claims, settings, jobs)
    try:
        await asyncio.to_thread(_check_exists, platform, source)
    except StoreError as error:
        raise _store_refusal(error, body.uri or source.uri) from error
    who = None if privileged else claims.sub
    if body.name is not None and not await registry.name_is_open_to(body.name, who):
        raise ApiError(
            403,
            "name_not_yours",
            f"model name {body.name!r} has versions {claims.sub} cannot see: "
            "register under another name",
        )
    try:
        job = await registry.register(
            model_id,
            source,
            name=body.name,
            tags=tags,
            label=body.source,
            requested_by=claims.sub,
            name_checked_for=who,
            privileged=privileged,
            upload_id=upload.id if upload else None,
        )
    except ModelExists as error:
        raise ApiError(409, "model_exists", str(error)) from error
    except UploadUsed as error:
        raise ApiError(409, "upload_registered", f"upload {error} is registered already") from error
    return status(job)


# --- uploads ------------------------------------------------------------------------------


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


async def _own_upload(registry: Registry, upload_id: str, claims: Claims) -> Upload:
    upload = await registry.upload(upload_id) if is_upload_id(upload_id) else None
    if upload is None:
        raise ApiError(404, "upload_not_found", f"no upload {upload_id}")
    if upload.created_by != claims.sub and not (claims.is_admin or claims.is_service):
        raise ApiError(403, "not_uploader", f"upload {upload_id} is {upload.created_by}'s")
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
    upload_id = uuid.uuid4().hex
    bucket, key = settings.platform_bucket, upload_key(upload_id, filename)
    parts, part_size = upload_parts(body.size, settings.part_size)
    multipart_id = None
    if part_size is not None:
        try:
            multipart_id = await asyncio.to_thread(platform.create_upload, bucket, key)
        except StoreError as error:
            raise _store_refusal(error, f"s3://{bucket}/{key}") from error
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
    return _answer(await _own_upload(registry, upload_id, claims), presigner)


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


@router.post("/models/uploads/{upload_id}/complete")
async def complete_upload(
    upload_id: str,
    body: CompleteRequest,
    claims: Caller,
    registry: RegistryDep,
    platform: PlatformDep,
    presigner: PresignerDep,
    response: Response,
) -> UploadAnswer:
    """The upload is whole: its parts are joined (multipart), and it may be registered
    (`upload_id` in POST /models/register). Completing it again answers it as it is."""
    upload = await _own_upload(registry, upload_id, claims)
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
            raise ApiError(503, "store_unavailable", str(error), {"Retry-After": "1"}) from error
        raise ApiError(422, "upload_not_completed", str(error)) from error
    completed = await registry.complete_upload(upload_id, size)
    if completed is None:  # completed meanwhile by another request
        completed = await _own_upload(registry, upload_id, claims)
    response.status_code = 200
    return _answer(completed, presigner)
