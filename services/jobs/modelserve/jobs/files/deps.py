"""Dependency aliases of the /v1/files and /v1/batches routes: the files table, the
platform store (503 without one: files live there) and the service's settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from modelserve.common.objects import ObjectStore
from modelserve.jobs.files.records import FileRecords
from modelserve.jobs.openai_errors import OpenAIError
from modelserve.jobs.settings import JobsSettings


async def _records(request: Request) -> FileRecords:
    return FileRecords(request.app.state.store.pool)


async def _objects(request: Request) -> ObjectStore:
    objects: ObjectStore | None = request.app.state.objects
    if objects is None:
        raise OpenAIError(
            503,
            "files need the platform store, and this jobs service has none (JOBS_STORE_ENDPOINT)",
            code="store_not_configured",
        )
    return objects


async def _settings(request: Request) -> JobsSettings:
    settings: JobsSettings = request.app.state.settings
    return settings


RecordsDep = Annotated[FileRecords, Depends(_records)]
ObjectsDep = Annotated[ObjectStore, Depends(_objects)]
SettingsDep = Annotated[JobsSettings, Depends(_settings)]
