"""Pure parts of the Batch API: an input line as an item (the request, or the error that
puts it in the error file), and a job's row as OpenAI's batch status."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from modelserve.jobs.batches.lines import (
    DEPTH_MAX,
    TooManyRequests,
    batch_items,
    line_item,
)
from modelserve.jobs.batches.records import is_batch_id, new_batch_id
from modelserve.jobs.batches.routes import BatchCreate
from modelserve.jobs.batches.views import batch_object, batch_status
from modelserve.jobs.files.records import is_file_id, new_file_id
from modelserve.jobs.files.transfers import LineTooLong, clean_filename, split_lines
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


def nested(depth: int) -> bytes:
    return line(body={"model": "m", "x": json.loads("[" * depth + "]" * depth)})


@pytest.mark.parametrize(
    "raw",
    [
        line(body={"model": "m", "temperature": float("nan")}),  # json.dumps writes NaN
        line(body={"model": "m", "temperature": float("inf")}),  # ... and Infinity
        line(body={"model": "m", "temperature": float("-inf")}),
        line().replace(b'"m"}', b'"m", "temperature": 1e400}'),  # a double's infinity
        line(body={"model": "m", "messages": [{"content": "a\x00b"}]}),  # \u0000, escaped
        line(body={"model": "m", "a\x00": 1}),  # in a key
        line(custom_id="\x00"),
        line().replace(b'"a"', b'"a\x00"'),  # a raw NUL byte
        line(body={"model": "m", "x": "\ud800"}),  # a lone surrogate, escaped
        nested(DEPTH_MAX + 1),
        b"[" * 200_000,  # RecursionError in Python's json
        b'{"custom_id": "a", "body": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    ],
)
def test_json_postgresql_cannot_keep_is_a_line_error(raw: bytes) -> None:
    item = line_item(raw, 3, CHAT, set())
    assert item["error"]["code"] == "invalid_json", item
    assert item["error"]["message"].startswith("line 3: ")
    json.dumps(item, allow_nan=False).encode()  # the error itself can be kept


def test_json_postgresql_can_keep_is_a_request() -> None:
    for raw in (
        nested(DEPTH_MAX - 3),
        line(body={"model": "m", "x": "\\u0000 é \U0001f600", "n": 1e300, "i": 10**300}),
    ):
        assert "error" not in line_item(raw, 1, CHAT, set())


async def _lines(*raw: bytes | LineTooLong) -> AsyncIterator[bytes | LineTooLong]:
    for value in raw:
        yield value


async def _items(limit: int, *raw: bytes | LineTooLong) -> list[dict[str, Any]]:
    return [item async for item in batch_items(_lines(*raw), CHAT, limit)]


def test_a_batch_runs_the_model_of_its_first_request_only() -> None:
    def named(custom_id: str, model: str) -> bytes:
        return line(custom_id=custom_id, body={"model": model})

    read = asyncio.run(
        _items(10, b"{", named("a", "m"), named("b", "other"), named("c", "m"), named("b", "m"))
    )
    assert [i.get("error", {}).get("code") for i in read] == [
        "invalid_json",
        None,
        "model_mismatch",
        None,
        "duplicate_custom_id",
    ]
    mismatch = read[2]
    assert mismatch["line"] == 3 and mismatch["custom_id"] == "b" and "body" not in mismatch
    assert mismatch["error"]["message"].startswith("line 3: ")
    assert "'other'" in mismatch["error"]["message"] and "line 2" in mismatch["error"]["message"]


def test_a_line_too_long_is_a_line_error() -> None:
    [item] = asyncio.run(_items(10, LineTooLong(size=9 << 20, limit=8 << 20)))
    assert item["line"] == 1 and item["error"]["code"] == "line_too_long"


def split(chunks: list[bytes], max_line: int) -> list[bytes | LineTooLong]:
    async def read() -> list[bytes | LineTooLong]:
        async def each() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return [value async for value in split_lines(each(), max_line)]

    return asyncio.run(read())


def test_lines_are_split_across_chunks_and_a_long_one_is_cut_off() -> None:
    assert split([b"ab", b"c\nd", b"\n\nef"], 10) == [b"abc", b"d", b"", b"ef"]
    assert split([b"ab\n", b""], 10) == [b"ab"]
    assert split([b"0123", b"45678", b"9ab\nok\n", b"0123456789", b"x"], 10) == [
        LineTooLong(12, 10),
        b"ok",
        LineTooLong(11, 10),
    ]
    assert split([b"0123456789\n"], 10) == [b"0123456789"]


def test_a_long_line_is_read_in_linear_time() -> None:
    # 32 MiB in 4 KiB chunks: rejoining the line per chunk copies ~128 GiB.
    chunks = [b"x" * 4096] * 8192 + [b"\n"]
    started = time.monotonic()
    [value] = split(chunks, 64 << 20)
    assert isinstance(value, bytes) and len(value) == 32 << 20
    assert time.monotonic() - started < 5


def test_ids_are_what_the_services_make() -> None:
    assert is_file_id(new_file_id()) and is_batch_id(new_batch_id())
    for bad in ("\x00", "file-\x00", new_file_id() + "\n", new_file_id()[:-1], "batch_1"):
        assert not is_file_id(bad) and not is_batch_id(bad)


def test_a_file_name_keeps_no_control_character() -> None:
    assert clean_filename("in\x00put\r\n\x7f.jsonl é".encode()) == "in_put___.jsonl é"
    assert clean_filename(b"\xff.jsonl") == "\ufffd.jsonl"


@pytest.mark.parametrize("metadata", [{"a": "\x00"}, {"\x00": "a"}, {"a": "\ud800"}])
def test_batch_metadata_postgresql_cannot_keep_is_refused(metadata: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        BatchCreate.model_validate(
            {
                "input_file_id": "f",
                "endpoint": CHAT,
                "completion_window": "24h",
                "metadata": metadata,
            }
        )


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
