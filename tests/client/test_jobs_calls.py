"""The job calls (modelserve.client.jobs.calls): where each goes, what it sends, and the
typed answers read from the jobs service's JSON; the CLI's exit status after a wait."""

from __future__ import annotations

import json

import pytest

from modelserve.client import calls
from modelserve.client.cli import parser
from modelserve.client.errors import ModelServeError
from modelserve.client.jobs import calls as job_calls
from modelserve.client.jobs.answers import DataGenJob, EvalJob, Job
from modelserve.client.jobs.commands import exit_status

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


def test_eval_job_sends_the_seed_s_fields_and_only_those_given() -> None:
    call = job_calls.eval_job("qwen3-step-5000", "math_eval_step_5000", "math_eval.jsonl", 1000)
    assert (call.method, call.path) == ("POST", "/eval/jobs")
    assert call.body == {
        "model_id": "qwen3-step-5000",
        "name": "math_eval_step_5000",
        "dataset_ref": "math_eval.jsonl",
        "max_samples": 1000,
    }
    scaled = job_calls.eval_job(
        "m", "n", "d", metrics=("accuracy",), budget=4, algorithm="best-of-n"
    )
    assert scaled.body is not None and scaled.body["metrics"] == ["accuracy"]
    assert (scaled.body["budget"], scaled.body["algorithm"]) == (4, "best-of-n")
    assert "max_samples" not in scaled.body
    examples = job_calls.eval_examples("eval_1", offset=100, limit=50)
    assert (examples.path, examples.query) == (
        "/eval/jobs/eval_1/examples",
        (("offset", "100"), ("limit", "50")),
    )


def test_data_gen_job_nests_its_config_as_the_seed_does() -> None:
    call = job_calls.data_gen_job(
        "Qwen3-0.6B",
        num_examples=10000,
        output_dir="train_shards_out",
        domain="math",
        shard_size=500,
    )
    assert (call.method, call.path) == ("POST", "/data_gen/jobs")
    assert call.body == {
        "model_id": "Qwen3-0.6B",
        "strategy": "self_instruct",
        "config": {
            "num_examples": 10000,
            "output_dir": "train_shards_out",
            "domain": "math",
            "shard_size": 500,
        },
    }
    assert job_calls.resume_data_gen_job("datagen_1").path == "/data_gen/jobs/datagen_1/resume"


def test_generate_sends_one_prompt_as_the_seed_or_several() -> None:
    one = job_calls.generate("m", "What is 2+2?", max_tokens=256, top_p=0.9)
    assert one.body == {"model": "m", "prompt": "What is 2+2?", "max_tokens": 256, "top_p": 0.9}
    many = job_calls.generate("m", ("a", "b"))
    assert many.body == {"model": "m", "prompts": ["a", "b"]}


def test_a_typed_job_is_polled_at_its_own_route() -> None:
    view = {
        "job_id": "datagen_7",
        "type": "data_gen",
        "strategy": "self_instruct",
        "status": "done",
        "progress": {"total": 2, "done": 2, "failed": 0, "fraction": 1.0},
        "created_at": "2026-12-05T23:00:00Z",
        "output_uri": "s3://b/datagen/u/out",
        "examples": None,
    }
    job = DataGenJob.model_validate(view)
    call = job_calls.refreshed(job)
    assert (call.method, call.path) == ("GET", "/data_gen/jobs/datagen_7")
    assert isinstance(call.parse(view), DataGenJob)
    assert not job.finished  # done, but its shards are not written yet
    assert DataGenJob.model_validate({**view, "examples": 2}).finished
    # Cancelled too: its shards are written a moment after it ends.
    cancelled = {**view, "status": "cancelled"}
    assert not DataGenJob.model_validate(cancelled).finished
    assert DataGenJob.model_validate({**cancelled, "examples": 1}).finished
    evaluation = {
        "job_id": "eval_7",
        "type": "eval",
        "name": "n",
        "dataset_ref": "r",
        "dataset": "d",
        "status": "cancelled",
        "progress": view["progress"],
        "created_at": view["created_at"],
        "result": None,
    }
    assert not EvalJob.model_validate(evaluation).finished
    result = {"accuracy": 0.5, "total_samples": 2, "correct": 1}
    assert EvalJob.model_validate({**evaluation, "result": result}).finished


def test_only_a_wait_for_a_job_that_did_not_end_done_exits_3() -> None:
    waited = parser().parse_args(["jobs", "wait", "job_1"])
    assert exit_status(waited, Job.model_validate({**A_JOB, "status": "failed"})) == 3
    assert exit_status(waited, Job.model_validate({**A_JOB, "status": "done"})) == 0
    looked = parser().parse_args(["jobs", "get", "job_1"])
    assert exit_status(looked, Job.model_validate({**A_JOB, "status": "cancelled"})) == 0
    ran = parser().parse_args(["eval", "run", "--model", "m", "--dataset", "d.jsonl", "--wait"])
    assert exit_status(ran, Job.model_validate({**A_JOB, "status": "cancelled"})) == 3
