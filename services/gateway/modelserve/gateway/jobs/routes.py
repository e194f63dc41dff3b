"""The routes of the jobs service that the gateway passes through as the caller
(docs/jobs.md, docs/batches.md, docs/evaluation.md, docs/data-generation.md): the caller's
token is checked here first, then again by the jobs service, which decides what they may
see and do."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import StreamingResponse

from modelserve.gateway.auth import Caller
from modelserve.gateway.jobs.client import JobsClient

router = APIRouter()
_METHODS = ["GET", "POST", "DELETE"]


async def _jobs(request: Request) -> JobsClient:
    jobs: JobsClient = request.app.state.jobs
    return jobs


JobsDep = Annotated[JobsClient, Depends(_jobs)]


async def _forward(request: Request, _: Caller, jobs: JobsDep) -> StreamingResponse:
    return await jobs.forward(request)


async def _forward_below(
    rest: str, request: Request, _: Caller, jobs: JobsDep
) -> StreamingResponse:
    """The same, for a path below the prefix (`rest`, the jobs service's to read)."""
    return await jobs.forward(request)


for prefix, tag in (
    ("/jobs", "jobs"),
    ("/v1/files", "batches"),
    ("/v1/batches", "batches"),
    ("/eval/jobs", "evaluation"),
    ("/data_gen/jobs", "data generation"),
    ("/generate", "generation"),
):
    router.add_api_route(prefix, _forward, methods=_METHODS, tags=[tag], include_in_schema=True)
    router.add_api_route(
        prefix + "/{rest:path}",
        _forward_below,
        methods=_METHODS,
        tags=[tag],
        include_in_schema=True,
    )
