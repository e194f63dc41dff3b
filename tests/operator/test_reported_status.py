"""The status the operator last wrote counts only for the very object it was written to:
a ModelServe deleted and made again under its name (perhaps by another tenant) is another
server, whose model the earlier one's status must not decide."""

from __future__ import annotations

from typing import Any

from modelserve.operator.handlers import last_written

WRITTEN = {"phase": "Ready", "model": {"uri": "s3://inference-models/models/alices/m.gguf"}}


def body(uid: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "foo", "uid": uid}, "status": {}}


def test_the_status_written_to_this_object_is_its_own() -> None:
    reported = {("default", "foo"): ("uid-a", WRITTEN)}
    assert last_written(reported, body("uid-a")) == WRITTEN


def test_an_earlier_object_of_the_same_name_says_nothing_of_a_new_one() -> None:
    reported = {("default", "foo"): ("uid-a", WRITTEN)}
    assert last_written(reported, body("uid-b")) is None
    assert last_written(reported, {"metadata": {"namespace": "default", "name": "foo"}}) is None


def test_nothing_written_is_nothing() -> None:
    assert last_written({}, body("uid-a")) is None
    assert last_written({("other", "foo"): ("uid-a", WRITTEN)}, body("uid-a")) is None
