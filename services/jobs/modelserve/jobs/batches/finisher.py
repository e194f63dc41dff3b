"""A finished batch's output and error files (OpenAI's JSONL), written in the transaction
that holds its job's row, and recorded as OpenAI Files (purpose `batch_output`) in that
same transaction: a worker that dies while finishing leaves neither rows nor a summary,
and the next writes the same content under the same keys."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from modelserve.common import bucket_layout
from modelserve.jobs.batches.executor import request_id
from modelserve.jobs.files.records import INSERT, insert_params, new_file_id
from modelserve.jobs.outputs import JobFiles, json_line
from modelserve.jobs.store import Job

OUTPUT_PURPOSE = "batch_output"


def output_line(job_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's line of a request that was answered 200."""
    return {
        "id": request_id(job_id, row["index"]),
        "custom_id": row["input"].get("custom_id"),
        "response": row["output"],
        "error": None,
    }


def error_line(job_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's line of a request that failed: the gateway's answer when there was one,
    and the error's code and message (a line of the input file that could not be sent
    says which line and why)."""
    error = row["error"] or {}
    return {
        "id": request_id(job_id, row["index"]),
        "custom_id": row["input"].get("custom_id"),
        "response": error.get("response"),
        "error": {"code": error.get("code"), "message": error.get("message")},
    }


def add_usage(total: dict[str, int], response: Any) -> None:
    body = response.get("body") if isinstance(response, dict) else None
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return
    for ours, theirs in (
        ("input_tokens", "prompt_tokens"),
        ("output_tokens", "completion_tokens"),
        ("total_tokens", "total_tokens"),
    ):
        value = usage.get(theirs)
        if isinstance(value, int):
            total[ours] += value


async def _write(
    job: Job, files: JobFiles, state: str, name: str, usage: dict[str, int] | None
) -> str:
    """One of the batch's files (the items in `state`), and its row: its file id."""
    build = output_line if state == "done" else error_line

    async def lines() -> AsyncIterator[bytes]:
        async for row in files.outcomes(job.id):
            if row["state"] == state:
                if usage is not None:
                    add_usage(usage, row["output"])
                yield json_line(build(job.id, row))

    key = f"{bucket_layout.BATCHES}{job.id}/{name}.jsonl"
    count, size = await files.upload(key, lines())
    file_id = new_file_id()
    params = insert_params(
        file_id=file_id,
        owner=job.owner,
        team=job.team,
        purpose=OUTPUT_PURPOSE,
        filename=f"{job.id}_{name}.jsonl",
        size=size,
        lines=count,
        key=key,
        job_id=job.id,
    )
    await files.cursor.execute(INSERT, params)
    return file_id


async def finish_batch(job: Job, files: JobFiles) -> dict[str, Any]:
    """The output file (requests answered 200) and the error file (the others), each
    only when it has lines; the summary the Batch object reads (`jobs.result`)."""
    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    output = await _write(job, files, "done", "output", usage) if job.done else None
    errors = await _write(job, files, "failed", "errors", None) if job.failed else None
    return {
        "output_file_id": output,
        "error_file_id": errors,
        "usage": usage,
        "finished_at": int(time.time()),
    }
