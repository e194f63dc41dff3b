"""The model record of a finished transfer, and what a job's status says: pure functions."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from modelserve.download.gguf_metadata import GgufMetadata
from modelserve.download.sources import (
    MANIFEST,
    default_name,
    folder_digest,
    model_format,
    source_uri,
    storage_prefix,
)
from modelserve.download.tables import Download, Kind, ModelRecord, State
from modelserve.download.transfers import Outcome, Plan


def build_record(
    job: Download, plan: Plan, outcome: Outcome, metadata: GgufMetadata | None, bucket: str
) -> ModelRecord:
    """A model of one file (besides a manifest) is that file: its key and SHA-256. Any
    other is its folder, with the digest of its listing (`sources.folder_digest`)."""
    paths = [file.path for file in plan.files]
    weights = [file for file in plan.files if file.path != MANIFEST]
    if len(weights) == 1:
        storage_key, sha256 = weights[0].key, outcome.files[weights[0].path]
    else:
        storage_key, sha256 = storage_prefix(plan.model_id), folder_digest(outcome.files)
    manifest = plan.manifest
    registered = job.kind == Kind.REGISTER
    name = (
        job.name
        or (manifest.name if manifest else None)
        or (metadata.name if metadata else None)
        # A registered version without a name is a model of its own, named by its id.
        or (plan.model_id if registered else default_name(plan.source))
    )
    return ModelRecord(
        id=plan.model_id,
        name=name,
        format=(manifest.format if manifest and manifest.format else None) or model_format(paths),
        size=plan.size,
        sha256=sha256,
        verified=outcome.verified,
        source=plan.source.uri,
        bucket=bucket,
        storage_key=storage_key,
        uri=f"s3://{bucket}/{storage_key}",
        files=[
            {"path": file.path, "size": file.size, "sha256": outcome.files[file.path]}
            for file in plan.files
        ],
        state="ready",
        architecture=metadata.architecture if metadata else None,
        parameters=metadata.parameters if metadata else None,
        quantization=metadata.quantization if metadata else None,
        context_length=metadata.context_length if metadata else None,
        requested_by=job.requested_by,
        origin=Kind.REGISTER.value if registered else Kind.DOWNLOAD.value,
        tags=list(job.tags or []),
        source_label=job.source_label,
    )


class JobError(BaseModel):
    code: str
    message: str


class DownloadStatus(BaseModel):
    """GET /status/{model_id}: where a download stands."""

    model_id: str
    kind: Kind = Kind.DOWNLOAD  # download, or register (a version copied in the platform store)
    name: str | None
    source: str
    state: State
    bytes_done: int
    bytes_total: int | None
    files_done: int
    files_total: int | None
    progress: float | None  # 0 to 1
    rate_bytes_per_second: float | None
    eta_seconds: float | None
    attempts: int
    error: JobError | None
    requested_by: str
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    updated_at: dt.datetime | None


def status(job: Download) -> DownloadStatus:
    source = source_uri(job.source_bucket, job.source_key, job.source_prefix)
    total, done = job.bytes_total, job.bytes_done
    if job.state == State.READY:
        done = total or done
    progress = done / total if total else (1.0 if job.state == State.READY else None)
    running = job.state in (State.TRANSFERRING, State.VERIFYING)
    eta = (
        max(0.0, (total - done) / job.rate) if running and total is not None and job.rate else None
    )
    return DownloadStatus(
        model_id=job.model_id,
        kind=job.kind,
        name=job.name,
        source=source,
        state=job.state,
        bytes_done=done,
        bytes_total=total,
        files_done=job.files_done,
        files_total=job.files_total,
        progress=progress,
        rate_bytes_per_second=job.rate if running or job.state == State.READY else None,
        eta_seconds=eta,
        attempts=job.attempts,
        error=JobError(code=job.error_code, message=job.error or "") if job.error_code else None,
        requested_by=job.requested_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
    )
