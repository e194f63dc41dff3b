"""Pure parts of the Batch API: an input line as an item (the request, or the error that
puts it in the error file), and a job's row as OpenAI's batch status."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelserve.jobs.batches.lines import TooManyRequests, batch_items, line_item
from modelserve.jobs.batches.views import batch_object, batch_status
from modelserve.jobs.store import Job

CHAT = "/v1/chat/completions"


def line(**changes: Any) -> bytes:
    request = {"custom_id": "a", "method": "POST", "url": CHAT, "body": {"model": "m"}}
    return json.dumps({**request, **changes}).encode()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_request"),
        (line(custom_id=None), "missing_custom_id"),
        (line(custom_id="x" * 513), "invalid_custom_id"),
        (line(method="GET"), "invalid_method"),
        (line(url="/v1/embeddings"), "invalid_url"),
        (line(body="hello"), "invalid_body"),
        (line(body={"messages": []}), "missing_model"),
        (line(body={"model": "m", "stream": True}), "invalid_body"),
    ],
)
def test_a_line_that_cannot_be_sent_carries_its_error(raw: bytes, code: str) -> None:
    item = line_item(raw, 7, CHAT, set())
    assert item["error"]["code"] == code
    assert item["error"]["message"].startswith("line 7: ")
    assert item["line"] == 7 and "body" not in item


def test_a_good_line_is_its_request_and_a_repeated_custom_id_is_refused() -> None:
    seen: set[str] = set()
    first = line_item(line(), 1, CHAT, seen)
    assert first == {"line": 1, "custom_id": "a", "url": CHAT, "body": {"model": "m"}}
    again = line_item(line(), 2, CHAT, seen)
    assert again["custom_id"] == "a" and again["error"]["code"] == "duplicate_custom_id"


def test_blank_lines_are_skipped_and_too_many_requests_stop_the_file() -> None:
    async def lines(*raw: bytes) -> AsyncIterator[bytes]:
        for value in raw:
            yield value

    async def items(limit: int, *raw: bytes) -> list[dict[str, Any]]:
        return [item async for item in batch_items(lines(*raw), CHAT, limit)]

    read = asyncio.run(items(2, line(), b"  ", line(custom_id="b")))
    assert [(i["line"], i["custom_id"]) for i in read] == [(1, "a"), (3, "b")]
    with pytest.raises(TooManyRequests):
        asyncio.run(items(1, line(), line(custom_id="b")))


def job(status: str, **changes: Any) -> Job:
    now = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
    values: dict[str, Any] = {
        "id": "batch_1",
        "type": "batch",
        "owner": "u",
        "team": None,
        "model": "m",
        "status": status,
        "total": 3,
        "done": 2,
        "failed": 1,
        "created_at": now,
        "started_at": now,
        "finished_at": now,
        "error": None,
        "spec": {"endpoint": CHAT, "completion_window": "24h", "input_file_id": "file-1"},
        "result": None,
    }
    return Job(**{**values, **changes})


@pytest.mark.parametrize(
    ("status", "result", "expected"),
    [
        ("pending", None, "validating"),
        ("running", None, "in_progress"),
        ("done", None, "finalizing"),
        ("done", {"finished_at": 1}, "completed"),
        ("failed", {"finished_at": 1}, "completed"),  # every request failed: error file
        ("cancelled", None, "cancelling"),
        ("cancelled", {"finished_at": 1}, "cancelled"),
    ],
)
def test_the_engine_states_map_to_openai_statuses(
    status: str, result: dict[str, Any] | None, expected: str
) -> None:
    assert batch_status(job(status, result=result)) == expected


def test_a_batch_whose_file_could_not_be_used_is_failed_with_its_errors() -> None:
    error = {"code": "empty_file", "message": "no requests", "param": "input_file_id"}
    failed = job(
        "failed", total=0, done=0, failed=0, spec={**job("failed").spec, "errors": [error]}
    )
    answer = batch_object(failed)
    assert answer.status == "failed" and answer.failed_at is not None
    assert answer.errors is not None and answer.errors.data[0].code == "empty_file"
    assert answer.completed_at is None and answer.finalizing_at is None
