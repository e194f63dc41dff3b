"""Download jobs: start one (the seeds' form or naming the source), follow, list, cancel,
retry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel, Field

from modelserve.common.auth import Caller
from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims
from modelserve.download.access import check_download, decision_name, may_manage, visible_to
from modelserve.download.deps import HttpDep, JobsDep, RegistryDep, SettingsDep
from modelserve.download.jobs import Jobs, ModelIdTaken
from modelserve.download.records import DownloadStatus, status
from modelserve.download.registry import Registry
from modelserve.download.settings import DownloadSettings
from modelserve.download.sources import (
    TEXT_PATTERN,
    InvalidSource,
    Source,
    check_model_id,
    check_sha256,
    is_model_id,
    refused_model_id,
    source_model_id,
)
from modelserve.download.tables import Download, Kind, State

router = APIRouter(tags=["downloads"])


class DownloadOptions(BaseModel):
    """The optional body of POST /download/{model_id}."""

    name: str | None = Field(
        default=None,
        max_length=256,
        pattern=TEXT_PATTERN,
        description="what the record is called; the download decision judges the source's name",
    )
    sha256: str | None = Field(default=None, description="expected SHA-256 of a single file")


class DownloadRequest(DownloadOptions):
    """POST /downloads: a download naming its source."""

    bucket: str | None = Field(default=None, description="upstream bucket; the default if left out")
    key: str | None = Field(default=None, description="one object: a single-file model")
    prefix: str | None = Field(default=None, description="a folder: every object under it")
    model_id: str | None = Field(
        default=None, description="the model's id; left out, one derived from the source"
    )


def _checked(
    bucket: str,
    key: str | None,
    prefix: str | None,
    model_id: str | None,
    sha256: str | None,
    allowed: list[str],
) -> tuple[str, Source, str | None]:
    """The model id, source and expected checksum a request names, or InvalidSource."""
    source = Source(bucket, key=key, prefix=prefix)
    if "*" not in allowed and bucket not in allowed:
        raise InvalidSource(
            "bucket_not_allowed", f"downloads come from bucket {', '.join(allowed)}, not {bucket}"
        )
    checksum = check_sha256(sha256)
    return (check_model_id(model_id) if model_id else source_model_id(source)), source, checksum


async def _start(
    bucket: str,
    key: str | None,
    prefix: str | None,
    model_id: str | None,
    options: DownloadOptions,
    *,
    claims: Claims,
    request: Request,
    response: Response,
    jobs: Jobs,
    registry: Registry,
    settings: DownloadSettings,
    http: HttpDep,
) -> DownloadStatus:
    """Queue the download, or record a request that can never succeed as a failed job
    with its reason and answer 422 (either only for callers who may download)."""
    recorded = refused_model_id(model_id, bucket, key, prefix)
    await check_download(
        claims,
        request.headers.get("authorization"),
        decision_name(bucket, key, prefix),
        contract_url=settings.contract_url,
        http=http,
    )
    try:
        model_id, source, sha256 = _checked(
            bucket, key, prefix, model_id, options.sha256, settings.allowed_buckets()
        )
    except InvalidSource as error:
        recorded_as = await jobs.refuse(
            recorded,
            bucket=bucket,
            key=key,
            prefix=prefix,
            name=options.name,
            code=error.code,
            message=str(error),
            requested_by=claims.sub,
            privileged=claims.is_admin or claims.is_service,
        )
        where = f" (recorded as the failed download {recorded})" if recorded_as else ""
        raise ApiError(422, error.code, f"{error}{where}") from error
    privileged = claims.is_admin or claims.is_service
    name = options.name
    who = None if privileged else claims.sub
    if name is not None and not await registry.name_is_open_to(name, who, Kind.DOWNLOAD):
        raise ApiError(
            403,
            "name_not_yours",
            f"model name {name!r} has versions another user registered: {claims.sub} may"
            " not download under it; name another",
        )
    try:
        job, queued = await jobs.submit(
            model_id,
            source,
            name=options.name,
            sha256=sha256,
            requested_by=claims.sub,
            privileged=claims.is_admin or claims.is_service,
        )
    except ModelIdTaken as error:
        raise ApiError(
            409, "model_id_taken", f"{error}: leave model_id out, or name another"
        ) from error
    response.status_code = 202 if queued else 200
    return status(job)


@router.post("/download/{model_id}", status_code=202)
async def download_model(
    model_id: str,
    claims: Caller,
    request: Request,
    response: Response,
    jobs: JobsDep,
    registry: RegistryDep,
    settings: SettingsDep,
    http: HttpDep,
    options: Annotated[DownloadOptions | None, Body()] = None,
) -> DownloadStatus:
    """Copy the upstream model `<model_id>/` of the default bucket (the seeds' call).

    202 when this queued it; 200 when it was already queued, copying or ready.
    """
    return await _start(
        settings.allowed_buckets()[0],
        None,
        model_id,
        model_id,
        options or DownloadOptions(),
        claims=claims,
        request=request,
        response=response,
        jobs=jobs,
        registry=registry,
        settings=settings,
        http=http,
    )


@router.post("/downloads", status_code=202)
async def download_source(
    body: DownloadRequest,
    claims: Caller,
    request: Request,
    response: Response,
    jobs: JobsDep,
    registry: RegistryDep,
    settings: SettingsDep,
    http: HttpDep,
) -> DownloadStatus:
    """Copy one object (`key`) or a folder (`prefix`) of an upstream bucket."""
    return await _start(
        body.bucket or settings.allowed_buckets()[0],
        body.key,
        body.prefix,
        body.model_id,
        body,
        claims=claims,
        request=request,
        response=response,
        jobs=jobs,
        registry=registry,
        settings=settings,
        http=http,
    )


async def _job(jobs: Jobs, model_id: str, claims: Claims) -> Download:
    """The job, if the caller may see it; 404 alike for one they may not and one that is
    not, so that ids do not leak."""
    # An id no model can have (a NUL byte, say, which PostgreSQL would refuse) is not asked.
    job = await jobs.get(model_id, visible_to=visible_to(claims)) if is_model_id(model_id) else None
    if job is None:
        raise ApiError(404, "download_not_found", f"no download of model {model_id}")
    return job


async def _managed_job(jobs: Jobs, model_id: str, claims: Claims) -> Download:
    """The job, if the caller may cancel or retry it (see `access.may_manage`)."""
    job = await _job(jobs, model_id, claims)
    if not may_manage(claims, job.requested_by):
        raise ApiError(403, "not_owner", f"the download of {model_id} is {job.requested_by}'s")
    return job


@router.get("/status/{model_id}")
async def download_status(model_id: str, claims: Caller, jobs: JobsDep) -> DownloadStatus:
    """State, bytes done and total, rate and ETA of the model's download."""
    return status(await _job(jobs, model_id, claims))


@router.get("/downloads")
async def list_downloads(
    claims: Caller,
    jobs: JobsDep,
    response: Response,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[DownloadStatus]:
    """Newest first, a page at a time (X-Total-Count: how many in all): every download
    for admins and services, one's own for users."""
    found, total = await jobs.recent(
        state=state, visible_to=visible_to(claims), limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return [status(job) for job in found]


@router.post("/download/{model_id}/cancel")
async def cancel_download(model_id: str, claims: Caller, jobs: JobsDep) -> DownloadStatus:
    """Stop a queued or running download; it leaves nothing in the platform store."""
    job = await _managed_job(jobs, model_id, claims)
    cancelled = await jobs.cancel(model_id)
    if cancelled is None:
        raise ApiError(409, "not_running", f"the download of {model_id} is {job.state}")
    return status(cancelled)


@router.post("/download/{model_id}/retry", status_code=202)
async def retry_download(model_id: str, claims: Caller, jobs: JobsDep) -> DownloadStatus:
    """Queue a failed or cancelled download again."""
    job = await _managed_job(jobs, model_id, claims)
    queued = await jobs.retry(model_id)
    if queued is None:
        raise ApiError(409, "not_finished", f"the download of {model_id} is {job.state}")
    return status(queued)
