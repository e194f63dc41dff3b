"""Downloads from the upstream store, passed to the download service as the caller (their
Authorization header), answers and refusals kept: start one, list them, follow one,
cancel and retry.

The download service decides who may do what (docs/download.md): admins and services
download anything, users what their contract allows (it asks the contract service with
the user's own token); users see, cancel and retry only the downloads they asked for. The
gateway adds no rule of its own and never asks with its service token here.

Paths: the service's `GET /status/{id}` is `GET /downloads/{id}` on the gateway (its
`/status/{id}` is a server's), and cancel and retry sit under it too
(`POST /downloads/{id}/cancel`, `…/retry`); `POST /download/{id}` (the seeds' call) and
`POST /downloads` keep the service's paths.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, Field

from modelserve.gateway.auth import Caller, CallerAuthorization
from modelserve.gateway.deps import RegistryDep
from modelserve.gateway.paging import set_total
from modelserve.gateway.registry.client import DownloadJob, StartedDownload

router = APIRouter(tags=["downloads"])
_TEXT = r"^[^\x00-\x1f\x7f]*$"
State = Literal["queued", "transferring", "verifying", "ready", "failed", "cancelled"]
Action = Literal["cancel", "retry"]


def _answered(started: StartedDownload, response: Response) -> DownloadJob:
    """202 when this request queued the download, 200 when it was there already."""
    response.status_code = 202 if started.queued else 200
    return started.job


class DownloadOptions(BaseModel):
    """The optional body of POST /download/{model_id}."""

    name: str | None = Field(
        default=None,
        max_length=256,
        pattern=_TEXT,
        description="what the record is called; the download decision judges the source's name",
    )
    sha256: str | None = Field(
        default=None, max_length=128, description="expected SHA-256 of a single file"
    )


class DownloadRequest(DownloadOptions):
    """POST /downloads: a download naming its source (the download service checks it)."""

    bucket: str | None = Field(
        default=None, max_length=255, description="upstream bucket; the default if left out"
    )
    key: str | None = Field(default=None, max_length=4096, description="one object: one file")
    prefix: str | None = Field(
        default=None, max_length=4096, description="a folder: every object under it"
    )
    model_id: str | None = Field(
        default=None, max_length=256, description="the record's id; left out, one from the source"
    )


@router.post("/download/{model_id}", status_code=202)
async def download_model(
    model_id: str,
    authorization: CallerAuthorization,
    response: Response,
    _: Caller,
    registry: RegistryDep,
    options: Annotated[DownloadOptions | None, Body()] = None,
) -> DownloadJob:
    """Copy the upstream model `<model_id>/` of the default bucket (the seeds' call): 202
    when queued, 200 when it was queued, copying or ready already."""
    body = (options or DownloadOptions()).model_dump(exclude_unset=True)
    started = await registry.start_download(authorization, body, model_id)
    return _answered(started, response)


@router.post("/downloads", status_code=202)
async def download_source(
    body: DownloadRequest,
    authorization: CallerAuthorization,
    response: Response,
    _: Caller,
    registry: RegistryDep,
) -> DownloadJob:
    """Copy one object (`key`) or a folder (`prefix`) of an upstream bucket."""
    started = await registry.start_download(authorization, body.model_dump(exclude_unset=True))
    return _answered(started, response)


@router.get("/downloads")
async def list_downloads(
    authorization: CallerAuthorization,
    response: Response,
    _: Caller,
    registry: RegistryDep,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[DownloadJob]:
    """Downloads and registrations newest first, a page at a time (X-Total-Count: how
    many in all): everyone's for admins, one's own for users."""
    page = await registry.downloads(authorization, state=state, limit=limit, offset=offset)
    set_total(response, page.total)
    return page.jobs


@router.get("/downloads/{model_id}")
async def download_status(
    model_id: str, authorization: CallerAuthorization, _: Caller, registry: RegistryDep
) -> DownloadJob:
    """State, bytes done and total, rate and ETA of one download (the download service's
    `GET /status/{model_id}`); 404 for one the caller may not see."""
    return await registry.download(authorization, model_id)


async def _manage(
    model_id: str, action: Action, authorization: str, registry: RegistryDep
) -> DownloadJob:
    return await registry.manage_download(authorization, model_id, action)


@router.post("/downloads/{model_id}/cancel")
async def cancel_download(
    model_id: str, authorization: CallerAuthorization, _: Caller, registry: RegistryDep
) -> DownloadJob:
    """Stop a queued or running download (its requester, admins); 409 `not_running`."""
    return await _manage(model_id, "cancel", authorization, registry)


@router.post("/downloads/{model_id}/retry", status_code=202)
async def retry_download(
    model_id: str, authorization: CallerAuthorization, _: Caller, registry: RegistryDep
) -> DownloadJob:
    """Queue a failed or cancelled download again (its requester, admins); 409
    `not_finished`."""
    return await _manage(model_id, "retry", authorization, registry)
