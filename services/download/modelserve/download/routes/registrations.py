"""Registering versions (POST /models/register): a checkpoint in the platform store
(`uri`) or an upload (`upload_id`) becomes a job that copies, hashes and records it."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, Field

from modelserve.common import bucket_layout
from modelserve.common.auth import Caller
from modelserve.common.errors import ApiError
from modelserve.common.objects import ObjectStore, StoreError
from modelserve.common.tokens import Claims
from modelserve.download.deps import JobsDep, PlatformDep, RegistryDep, SettingsDep
from modelserve.download.records import DownloadStatus, status
from modelserve.download.registration import (
    UPLOADS_PREFIX,
    parse_platform_uri,
    parse_tags,
    reaches,
    stored_model,
)
from modelserve.download.registry import ModelExists, Registry, UploadUsed
from modelserve.download.routes.uploads import own_upload, store_refusal
from modelserve.download.sources import (
    MODELS_PREFIX,
    TEXT_PATTERN,
    InvalidSource,
    Source,
    check_model_id,
)
from modelserve.download.tables import Upload

router = APIRouter(tags=["registry"])


class RegisterRequest(BaseModel):
    """POST /models/register: a version of a model, from a checkpoint in the platform
    store (`uri`) or an upload (`upload_id`)."""

    id: str = Field(max_length=256, description="the version's model id, new")
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=TEXT_PATTERN,
        description="the model name its versions share (the served name); default: the "
        "GGUF file's general.name, else the id",
    )
    source: str | None = Field(
        default=None, max_length=256, pattern=TEXT_PATTERN, description="a free label, e.g. '4090'"
    )
    tags: str | list[str] | None = Field(
        default=None, description="'step5000,math' or a list", max_length=4096
    )
    uri: str | None = Field(
        default=None, max_length=2048, description="s3://<platform bucket>/<key or prefix/>"
    )
    upload_id: str | None = Field(default=None, max_length=64)


def _check_exists(platform: ObjectStore, source: Source) -> None:
    if source.key is not None:
        platform.stat(source.bucket, source.key)
    elif next(iter(platform.objects(source.bucket, source.folder)), None) is None:
        raise StoreError("object_not_found", f"nothing under {source.uri}")


async def _uploaded_source(
    registry: Registry, upload_id: str, claims: Claims
) -> tuple[Source, Upload]:
    upload = await own_upload(registry, upload_id, claims)
    if upload.state == "open":
        raise ApiError(
            409, "upload_not_complete", f"upload {upload_id} is not complete: complete it first"
        )
    # A registered one is registered again only if that registration failed or was
    # cancelled (the registry decides, in the transaction that queues it).
    return Source(upload.bucket, key=upload.key), upload


async def _checked_uri(uri: str, claims: Claims, settings: SettingsDep, jobs: JobsDep) -> Source:
    try:
        source = parse_platform_uri(uri, settings.platform_bucket)
    except InvalidSource as error:
        raise ApiError(422, error.code, str(error)) from error
    if claims.is_admin or claims.is_service:
        return source
    # Users register what is theirs to see: their uploads (by upload_id), objects of models
    # they can see (inside `models/<id>/`), and what lies outside both prefixes and those
    # where the jobs service keeps tenants' files and outputs (the same bucket, in the
    # chart). Nothing that holds any of them: `models/` itself (or a folder above it) is
    # every model.
    if reaches(source, UPLOADS_PREFIX):
        raise ApiError(403, "use_upload_id", "register an upload by its upload_id")
    kept = [prefix for prefix in bucket_layout.JOBS_PREFIXES if reaches(source, prefix)]
    if kept:
        raise ApiError(
            403,
            "source_not_visible",
            f"{uri} holds what the jobs service keeps for its users ({', '.join(kept)}):"
            " only admins and services may register it",
        )
    if reaches(source, MODELS_PREFIX):
        stored = stored_model(source)
        if stored is None or await jobs.model(stored, visible_to=claims.sub) is None:
            raise ApiError(
                403,
                "source_not_visible",
                f"{uri} is not inside a model {claims.sub} can see ({MODELS_PREFIX}<id>/…)",
            )
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
        # Not an upload's: its object was there when it completed, and is gone once it is
        # registered (which the registry answers with UploadUsed).
        try:
            await asyncio.to_thread(_check_exists, platform, source)
        except StoreError as error:
            raise store_refusal(error, body.uri) from error
    who = None if privileged else claims.sub
    if body.name is not None and not await registry.name_is_open_to(body.name, who):
        raise ApiError(
            403,
            "name_not_yours",
            f"model name {body.name!r} has versions that {claims.sub} did not register (a "
            "downloaded version makes a name the platform's): register under another name",
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
        raise ApiError(
            409,
            "upload_registered",
            f"upload {error} is registered by a registration that has not failed nor been "
            "cancelled",
        ) from error
    return status(job)
