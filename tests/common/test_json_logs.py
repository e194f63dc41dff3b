"""One JSON object per log line, with the request's id when the line is written inside a
request, and the traceback of an exception. (The services' own JSON lines are checked in
test_request_ids.)"""

from __future__ import annotations

import json
import logging
import sys

from modelserve.common.logs import JsonFormatter
from modelserve.common.request_ids import REQUEST_ID


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = sys.exc_info() if exc else None
    level = logging.WARNING
    return logging.LogRecord("modelserve.test", level, __file__, 1, message, args, exc_info)


def test_a_line_is_one_json_object_with_the_request_id() -> None:
    token = REQUEST_ID.set("abc-123")
    try:
        line = JsonFormatter("gateway").format(record("%d models", 3))
    finally:
        REQUEST_ID.reset(token)
    assert "\n" not in line
    found = json.loads(line)
    assert found["message"] == "3 models"
    assert (found["level"], found["logger"], found["service"]) == (
        "WARNING",
        "modelserve.test",
        "gateway",
    )
    assert found["request_id"] == "abc-123"
    assert found["time"].endswith("Z")
    assert "exception" not in found


def test_an_exception_goes_in_its_field_and_outside_a_request_the_id_is_null() -> None:
    try:
        raise ValueError("the bad value")
    except ValueError:
        line = JsonFormatter("contract").format(record("failed", exc=True))
    found = json.loads(line)
    assert found["request_id"] is None
    assert "Traceback" in found["exception"] and "the bad value" in found["exception"]
