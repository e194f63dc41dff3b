"""The job calls (modelserve.client.jobs.calls): where each goes, the filters it sends,
and the typed answers read from the jobs service's JSON."""

from __future__ import annotations

import json

import pytest

from modelserve.client import calls
from modelserve.client.errors import ModelServeError
from modelserve.client.jobs import calls as job_calls
from modelserve.client.jobs.answers import Job

A_JOB = {
    "id": "job_ab12",
    "type": "chat",
    "owner": "dana",
    "team": None,
    "key_id": None,
    "model": "smollm2",
    "status": "running",
    "total": 4,
    "done": 1,
    "failed": 0,
    "created_at": "2026-12-05T23:00:00Z",
    "started_at": "2026-12-05T23:00:01Z",
    "finished_at": None,
    "error": None,
    "spec": {},
    "result": None,
    "progress": {"total": 4, "done": 1, "failed": 0, "fraction": 0.25, "rate": 0.5,
                 "eta_seconds": 6.0},
}  # fmt: skip


def test_the_job_calls_go_where_the_jobs_service_has_them() -> None:
    assert (job_calls.job_stats().method, job_calls.job_stats().path) == ("GET", "/jobs/stats")
    assert job_calls.get_job("job_1").path == "/jobs/job_1"
    cancel = job_calls.cancel_job("job_1")
    assert (cancel.method, cancel.path, cancel.body) == ("POST", "/jobs/job_1/cancel", None)
    assert job_calls.get_job("a/../stats").path == "/jobs/a%2F..%2Fstats"


def test_list_jobs_sends_only_the_filters_given() -> None:
    assert job_calls.list_jobs().query == ()
    listed = job_calls.list_jobs(type="eval", status="done", limit=10, offset=0)
    assert listed.query == (("type", "eval"), ("status", "done"), ("limit", "10"), ("offset", "0"))


def test_a_job_is_read_with_its_progress_and_kept_fields() -> None:
    (job,) = calls.answer(job_calls.list_jobs(), 200, _json([A_JOB]))
    assert isinstance(job, Job) and not job.finished
    assert job.progress is not None and job.progress.eta_seconds == 6.0
    assert job.model_dump()["key_id"] is None  # a field the client does not name is kept
    done = calls.answer(job_calls.get_job("job_ab12"), 200, _json({**A_JOB, "status": "done"}))
    assert done.finished


def test_a_refusal_is_the_platform_s_error() -> None:
    body = b'{"error": {"code": "job_finished", "message": "job job_1 is done already"}}'
    with pytest.raises(ModelServeError) as raised:
        calls.answer(job_calls.cancel_job("job_1"), 409, body)
    assert (raised.value.status, raised.value.code) == (409, "job_finished")


def _json(value: object) -> bytes:
    return json.dumps(value).encode()
