"""OpenAI's File objects, built from rows of the `files` table."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from modelserve.jobs.files.records import FileRecord


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: str
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


def file_object(record: FileRecord) -> FileObject:
    return FileObject(
        id=record.id,
        bytes=record.bytes,
        created_at=int(record.created_at.timestamp()),
        filename=record.filename,
        purpose=record.purpose,
        status=record.status,
    )


def file_list(records: list[FileRecord], has_more: bool) -> FileList:
    return FileList(
        data=[file_object(record) for record in records],
        first_id=records[0].id if records else None,
        last_id=records[-1].id if records else None,
        has_more=has_more,
    )
