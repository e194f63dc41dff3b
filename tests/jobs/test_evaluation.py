"""Evaluation jobs through the real gateway and SmolLM2: the shipped arithmetic set
judged as bench/scaling_quality.py judges it at budget 1, the per-example log in the
store and through its route, bad dataset lines failing alone, per-caller visibility and
refused dataset references, and an evaluation under inference-time scaling."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from modelserve.testbed.arithmetic import Task, tasks
from modelserve.testbed.job_platform import JobPlatform
from modelserve.testbed.polling import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "scaling_quality.py"
BENCH_MAX_TOKENS = 16  # the bench's default --max-tokens
COUNT = 12


def load_bench() -> ModuleType:
    """bench/scaling_quality.py as a module (bench/ is no package): its own `ask`."""
    spec = importlib.util.spec_from_file_location("scaling_quality", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def put_dataset(platform: JobPlatform, lines: list[str]) -> str:
    """A dataset under datasets/ of the jobs service's bucket: its key."""
    key = f"datasets/test-{uuid.uuid4().hex[:8]}.jsonl"
    platform.store.put(platform.bucket, key, ("\n".join(lines) + "\n").encode())
    return key


def arithmetic_lines(questions: list[Task]) -> list[str]:
    """The set as `python -m modelserve.testbed.arithmetic` writes it."""
    return [json.dumps({"id": t.id, "question": t.question, "answer": t.answer}) for t in questions]


def finished_eval(client: httpx.Client, job_id: str, timeout: float = 150) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        answer = client.get(f"/eval/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job if job["status"] in ("done", "failed", "cancelled") else None

    return wait_for(check, timeout=timeout, what=f"evaluation {job_id}", interval=0.5)


def read_object(platform: JobPlatform, uri: str) -> list[dict[str, Any]]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    response = platform.store.client().get_object(bucket, key)
    try:
        data = response.read()
    finally:
        response.close()
        response.release_conn()
    return [json.loads(line) for line in data.decode().splitlines()]


def bench_answers(platform: JobPlatform, user: str, questions: list[Task]) -> list[bool]:
    """Each question asked by the bench's own `ask` at budget 1, as `user`, one at a time."""
    bench = load_bench()

    async def run() -> list[bool]:
        async with httpx.AsyncClient(
            base_url=platform.gateway.url,
            headers={"Authorization": f"Bearer {platform.token(user)}"},
            timeout=120,
        ) as http:
            return [
                await bench.ask(
                    http,
                    platform.model,
                    task,
                    algorithm="self-consistency",
                    budget=1,
                    max_tokens=BENCH_MAX_TOKENS,
                )
                for task in questions
            ]

    return asyncio.run(run())


def test_arithmetic_eval_gives_the_bench_accuracy_at_budget_1(
    job_platform: JobPlatform,
) -> None:
    questions = tasks(COUNT)
    key = put_dataset(job_platform, arithmetic_lines(questions))
    with job_platform.user("eva", team="evals") as eva:
        queued = eva.post(
            "/eval/jobs",
            json={
                "model_id": job_platform.model,
                "name": "arithmetic_budget_1",
                "dataset_ref": key.removeprefix("datasets/"),
                "metrics": ["accuracy", "avg_loss"],
                "max_samples": COUNT,
                "per_example_logging": True,
                "max_tokens": BENCH_MAX_TOKENS,
                "budget": 1,
                "algorithm": "none",
            },
        )
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["job_id"]
        assert queued.json()["status"] == "pending" and queued.json()["type"] == "eval"
        job = finished_eval(eva, job_id)
        page = eva.get(f"/eval/jobs/{job_id}/examples", params={"offset": 4, "limit": 3})
        listed = eva.get("/eval/jobs")
    bench = bench_answers(job_platform, "eva", questions)

    assert job["status"] == "done", job
    result = job["result"]
    records = read_object(job_platform, result["examples"])
    assert [r["correct"] for r in records] == bench  # example by example, not only in sum
    assert result["correct"] == sum(bench) and result["total_samples"] == COUNT
    assert result["accuracy"] == sum(bench) / len(bench)
    assert result["failed"] == 0 and job["progress"]["done"] == COUNT

    # The per-example log: one line per example, in order, with what was asked and got.
    assert [r["line"] for r in records] == list(range(1, COUNT + 1))
    for record, task in zip(records, questions, strict=True):
        assert record["id"] == task.id and record["expected"] == task.answer
        assert record["messages"] == [{"role": "user", "content": task.question}]
        assert record["error"] is None and record["scaling"] is None
        assert record["tokens"] >= 1 and record["loss"] >= 0
    losses = [r["loss"] for r in records]
    assert result["avg_loss"] == pytest.approx(sum(losses) / len(losses))
    assert result["loss_samples"] == COUNT

    assert page.status_code == 200, page.text
    assert page.json()["examples"] == records[4:7]
    assert listed.headers["X-Total-Count"] == "1"
    assert [j["job_id"] for j in listed.json()] == [job_id]


def test_bad_lines_fail_alone_and_max_samples_counts_examples(
    job_platform: JobPlatform,
) -> None:
    lines = [
        json.dumps({"prompt": "What is 2 + 2? Answer with the number only.", "answer": 4}),
        "this is not json",
        "",
        json.dumps({"question": "What is 3 + 5?"}),
        json.dumps(["What is 1 + 1?", 2]),
        json.dumps({"messages": [{"role": "user", "content": "What is 10 - 3?"}], "answer": "7"}),
        json.dumps({"prompt": "never read: beyond max_samples", "answer": 1}),
    ]
    key = put_dataset(job_platform, lines)
    with job_platform.user("bert") as bert:
        queued = bert.post(
            "/eval/jobs",
            json={
                "model_id": job_platform.model,
                "name": "bad_lines",
                "dataset_ref": key,
                "max_samples": 5,
                "max_tokens": 4,
            },
        )
        assert queued.status_code == 202, queued.text
        job = finished_eval(bert, queued.json()["job_id"])
    assert job["status"] == "done" and job["progress"]["total"] == 5
    result = job["result"]
    assert result["total_samples"] == 2 and result["failed"] == 3
    records = read_object(job_platform, result["examples"])
    assert [r["line"] for r in records] == [1, 2, 4, 5, 6]  # the blank line 3 is no example
    errors = {r["line"]: r["error"] for r in records if r["error"] is not None}
    assert {line: e["code"] for line, e in errors.items()} == {
        2: "invalid_example",
        4: "invalid_example",
        5: "invalid_example",
    }
    assert errors[2]["message"].startswith("line 2: not JSON")
    assert errors[4]["message"] == "line 4: an example needs an `answer` (a string or a number)"
    assert errors[5]["message"] == "line 5: an example must be a JSON object"
    assert [r["expected"] for r in records if r["error"] is None] == ["4", "7"]


def test_a_dataset_with_a_line_over_a_mib_is_refused_whole(job_platform: JobPlatform) -> None:
    """An example is kept in PostgreSQL with its job: a line of 1 MiB and more (a file
    with no newline at all, say) is refused, and no job is left behind."""
    good = json.dumps({"prompt": "Say 1.", "answer": "1"})
    huge = json.dumps({"prompt": "x" * (1 << 20), "answer": "1"})
    key = put_dataset(job_platform, [good, huge, good])
    body = {"model_id": job_platform.model, "name": "huge", "dataset_ref": key, "max_tokens": 2}
    with job_platform.user("petra") as petra:
        answer = petra.post("/eval/jobs", json=body)
        assert answer.status_code == 400, answer.text[:300]
        error = answer.json()["error"]
        assert error["code"] == "dataset_refused" and "line 2" in error["message"], error
        assert petra.get("/eval/jobs").json() == []


def test_jobs_and_datasets_per_caller(job_platform: JobPlatform) -> None:
    key = put_dataset(job_platform, [json.dumps({"prompt": "Say 1.", "answer": "1"})])
    body = {"model_id": job_platform.model, "name": "mine", "max_tokens": 2}
    with job_platform.user("olga") as olga, job_platform.user("mallory") as mallory:
        queued = olga.post(
            "/eval/jobs", json={**body, "dataset_ref": f"s3://{job_platform.bucket}/{key}"}
        )
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["job_id"]
        assert mallory.get(f"/eval/jobs/{job_id}").status_code == 404
        assert mallory.get(f"/eval/jobs/{job_id}/examples").status_code == 404
        assert mallory.get("/eval/jobs").json() == []
        assert finished_eval(olga, job_id)["status"] == "done"
        with job_platform.admin() as admin:
            assert admin.get(f"/eval/jobs/{job_id}").status_code == 200
        refused = {
            "s3://another-bucket/datasets/x.jsonl": "dataset_refused",
            "https://example.com/x.jsonl": "dataset_refused",
            "datasets/../jobs/x.jsonl": "dataset_refused",
            f"s3://{job_platform.bucket}/jobs/{job_id}/examples.jsonl": "dataset_refused",
            "no-such-dataset.jsonl": "dataset_not_found",
        }
        for ref, code in refused.items():
            answer = mallory.post("/eval/jobs", json={**body, "dataset_ref": ref})
            assert answer.status_code == 400, (ref, answer.text)
            assert answer.json()["error"]["code"] == code, ref
        typo = mallory.post("/eval/jobs", json={**body, "dataset_ref": key, "budgte": 2})
        assert typo.status_code == 422

        # One's own OpenAI File is a dataset too; another's is not there.
        uploaded = olga.post(
            "/v1/files",
            data={"purpose": "batch"},
            files={"file": ("set.jsonl", b'{"prompt": "Say 2.", "answer": 2}\n')},
        )
        assert uploaded.status_code == 200, uploaded.text
        file_id = uploaded.json()["id"]
        by_file = olga.post("/eval/jobs", json={**body, "dataset_ref": file_id})
        assert by_file.status_code == 202, by_file.text
        assert by_file.json()["dataset"].endswith(f"/{file_id}")
        assert finished_eval(olga, by_file.json()["job_id"])["progress"]["done"] == 1
        stolen = mallory.post("/eval/jobs", json={**body, "dataset_ref": file_id})
        assert stolen.status_code == 400
        assert stolen.json()["error"]["code"] == "dataset_not_found"


def test_an_eval_under_a_budget_runs_scaled(job_platform: JobPlatform) -> None:
    questions = tasks(3)
    key = put_dataset(job_platform, arithmetic_lines(questions))
    with job_platform.user("sasha") as sasha:
        queued = sasha.post(
            "/eval/jobs",
            json={
                "model_id": job_platform.model,
                "name": "arithmetic_self_consistency_2",
                "dataset_ref": key,
                "max_tokens": 8,
                "budget": 2,
                "algorithm": "self-consistency",
            },
        )
        assert queued.status_code == 202, queued.text
        assert queued.json()["budget"] == 2
        job = finished_eval(sasha, queued.json()["job_id"])
    assert job["status"] == "done", job
    result = job["result"]
    assert result["total_samples"] == 3
    records = read_object(job_platform, result["examples"])
    for record in records:
        scaling = record["scaling"]
        assert scaling["algorithm"] == "self-consistency" and scaling["budget"] == 2
        assert len(scaling["candidates"]) == 2
        assert record["answer"] in scaling["candidates"]
    # A scaled answer carries no log-probabilities: no loss, said so.
    assert result["avg_loss"] is None and result["loss_samples"] == 0


def doc_script() -> str:
    """The bash blocks of docs/evaluation.md (but the one that sets the environment), as
    one script, made small enough for SmolLM2 here: 3 examples, short generations."""
    text = (ROOT / "docs" / "evaluation.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    script = "\n".join(block for block in blocks if not block.startswith("export "))
    for docs, here in [
        (".venv/bin/python", sys.executable),
        ("--count 20", "--count 3"),
        ('"max_samples": 20', '"max_samples": 3'),
        ('"max_tokens": 256', '"max_tokens": 8'),
    ]:
        assert docs in script, docs
        script = script.replace(docs, here)
    return "set -euo pipefail\n" + script + '\necho "EVAL_JOB=$EVAL_JOB GEN_JOB=$GEN_JOB"\n'


def test_the_examples_of_docs_evaluation_md_run(job_platform: JobPlatform, tmp_path: Path) -> None:
    job_platform.user("doc").close()
    env = {
        **os.environ,
        "GATEWAY_URL": job_platform.gateway.url,
        "MODELSERVE_TOKEN": job_platform.token("doc"),
    }
    ran = subprocess.run(
        ["bash", "-c", doc_script()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert ran.returncode == 0, ran.stderr + ran.stdout
    ids = dict(part.split("=") for part in ran.stdout.strip().splitlines()[-1].split())
    with job_platform.user("doc") as doc:
        job = doc.get(f"/eval/jobs/{ids['EVAL_JOB']}").json()
        # The scaled example's job is queued; it need not run to its end here.
        for status in ("pending", "running"):
            for queued in doc.get("/eval/jobs", params={"status": status}).json():
                doc.post(f"/jobs/{queued['job_id']}/cancel")
        generation = finished_generation_of(doc, ids["GEN_JOB"])
    assert job["status"] == "done" and job["result"]["total_samples"] == 3, job
    assert job["dataset_ref"].startswith("file-")
    assert '"status": "done"' in ran.stdout and '"correct"' in ran.stdout
    assert generation["status"] == "done" and generation["generations"][0]["text"]


def finished_generation_of(client: httpx.Client, job_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/generate/{job_id}").json()
        return job if job["status"] in ("done", "failed") else None

    return wait_for(check, timeout=60, what=f"generation {job_id}", interval=0.5)
