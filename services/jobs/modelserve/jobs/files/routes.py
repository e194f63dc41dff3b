"""/v1/files: upload, list, get, content and delete OpenAI Files, per caller (a user sees
their own, admins and services every one: 404 for the others')."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from starlette.responses import StreamingResponse

from modelserve.jobs.deps import CallerDep, visible_to
from modelserve.jobs.files.deps import ObjectsDep, RecordsDep, SettingsDep
from modelserve.jobs.files.records import (
    FILE_ID_PATTERN,
    FileRecord,
    FileRecords,
    Order,
    file_key,
    insert_params,
    is_file_id,
    new_file_id,
)
from modelserve.jobs.files.transfers import (
    StoreWriter,
    form_boundary,
    prefixed,
    read_object,
    receive_file,
)
from modelserve.jobs.files.views import FileDeleted, FileList, FileObject, file_list, file_object
from modelserve.jobs.openai_errors import OpenAIError, OpenAIRoute

router = APIRouter(prefix="/v1/files", tags=["batches"], route_class=OpenAIRoute)

# What this platform's files are for: inputs of the Batch API (its output files are
# `batch_output`, written by batches themselves).
UPLOAD_PURPOSES = ("batch",)
# Room for the form around the file in a request's Content-Length.
FORM_OVERHEAD = 64 * 1024


def not_found(file_id: str) -> OpenAIError:
    return OpenAIError(404, f"No such File object: {file_id}", code="file_not_found", param="id")


async def visible_file(records: FileRecords, file_id: str, who: str | None) -> FileRecord:
    record = await records.get(file_id, who=who) if is_file_id(file_id) else None
    if record is None:
        raise not_found(file_id)
    return record


@router.post("")
async def create_file(
    request: Request,
    claims: CallerDep,
    records: RecordsDep,
    objects: ObjectsDep,
    settings: SettingsDep,
) -> FileObject:
    """Upload a file (multipart: `file`, `purpose` "batch"), streamed into the platform
    store; refused beyond JOBS_FILES_MAX_BYTES (413)."""
    boundary = form_boundary(request.headers.get("content-type"))
    limit = settings.files_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise OpenAIError(
            413,
            f"the file is larger than this platform's limit of {limit} bytes",
            code="file_too_large",
            param="file",
        )
    file_id = new_file_id()
    writer = StoreWriter(objects, settings.store_bucket, file_key(claims.sub, file_id))
    try:
        upload = await receive_file(request.stream(), boundary, writer, limit)
        purpose = upload.fields.get("purpose")
        if purpose not in UPLOAD_PURPOSES:
            raise OpenAIError(
                400,
                f"'{purpose}' is not a purpose this platform takes: files here are inputs "
                "of the Batch API (purpose 'batch')",
                code="invalid_purpose",
                param="purpose",
            )
        if upload.filename is None:
            raise OpenAIError(400, "the upload has no `file`", code="missing_file", param="file")
        await writer.finish()
    except BaseException:
        await writer.abort()
        raise
    try:
        record = await records.add(
            insert_params(
                file_id=file_id,
                owner=claims.sub,
                team=claims.teams[0] if claims.teams else None,
                purpose=purpose,
                filename=upload.filename,
                size=upload.size,
                lines=upload.lines,
                key=writer.key,
            )
        )
    except BaseException:
        await asyncio.to_thread(objects.remove, settings.store_bucket, writer.key)
        raise
    return file_object(record)


@router.get("")
async def list_files(
    claims: CallerDep,
    records: RecordsDep,
    purpose: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    after: Annotated[str | None, Query(pattern=FILE_ID_PATTERN)] = None,
    order: Order = "desc",
) -> FileList:
    """The caller's files (every one for admins) by creation time, newest first unless
    `order=asc`; `after` a file id to continue from."""
    found, has_more = await records.page(
        who=visible_to(claims), purpose=purpose, after=after, limit=limit, order=order
    )
    return file_list(found, has_more)


@router.get("/{file_id}")
async def get_file(file_id: str, claims: CallerDep, records: RecordsDep) -> FileObject:
    return file_object(await visible_file(records, file_id, visible_to(claims)))


@router.get("/{file_id}/content", response_class=StreamingResponse)
async def file_content(
    file_id: str,
    claims: CallerDep,
    records: RecordsDep,
    objects: ObjectsDep,
    settings: SettingsDep,
) -> StreamingResponse:
    """The file's bytes, streamed from the platform store."""
    record = await visible_file(records, file_id, visible_to(claims))
    chunks = read_object(objects, settings.store_bucket, record.key, record.bytes)
    # The first range is read before the head goes out: a store that cannot be reached
    # is then a 503 the client can act on, not a 200 whose body breaks off at once.
    first = await anext(chunks, b"")
    return StreamingResponse(
        prefixed(first, chunks),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(record.bytes),
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(record.filename)}",
        },
    )


@router.delete("/{file_id}")
async def delete_file(
    file_id: str,
    claims: CallerDep,
    records: RecordsDep,
    objects: ObjectsDep,
    settings: SettingsDep,
) -> FileDeleted:
    """Forget the file and remove its content from the store (a batch made from it keeps
    its requests: they were copied in when it was created)."""
    record = await records.delete(file_id, who=visible_to(claims)) if is_file_id(file_id) else None
    if record is None:
        raise not_found(file_id)
    await asyncio.to_thread(objects.remove, settings.store_bucket, record.key)
    return FileDeleted(id=record.id, deleted=True)
