"""modelserve.client's job methods and the CLI's job commands on the real path: the
gateway passes /jobs, /eval/jobs, /data_gen/jobs and /generate through to the jobs
service, which runs the items on SmolLM2 as their owner (`job_platform`). Chat jobs are
made in the store as a job type's route would; a job of a type no worker runs
(`client_idle`) stays pending, to be cancelled or waited for in vain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from modelserve.client import AsyncClient, Client, EvalJob, Generation, ModelServeError
from modelserve.client.jobs.answers import Job
from modelserve.jobs.store import JobStore
from modelserve.testbed.arithmetic import tasks
from modelserve.testbed.job_platform import JobPlatform

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]
StoreOpener = Callable[[str], contextlib.AbstractAsyncContextManager[JobStore]]
IDLE = "client_idle"  # no executor runs this type: its jobs stay pending


def create_job(
    platform: JobPlatform, open_store: StoreOpener, owner: str, n: int, type: str = "chat"
) -> str:
    return platform.queue_chat(owner, None, n, type)


def put_dataset(platform: JobPlatform, lines: list[str]) -> str:
    """An evaluation dataset under datasets/ of the jobs service's bucket: its name there."""
    name = f"client-{uuid.uuid4().hex[:8]}.jsonl"
    platform.store.put(platform.bucket, f"datasets/{name}", ("\n".join(lines) + "\n").encode())
    return name


def arithmetic(count: int) -> list[str]:
    return [
        json.dumps({"id": t.id, "question": t.question, "answer": t.answer}) for t in tasks(count)
    ]


def client_of(platform: JobPlatform, name: str) -> Client:
    platform.user(name).close()
    return Client(platform.gateway.url, platform.token(name), timeout=60)


def modelserve(platform: JobPlatform, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "modelserve"
    return subprocess.run(
        [cli, *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={"MODELSERVE_URL": platform.gateway.url, "MODELSERVE_TOKEN": platform.token(name)},
        check=False,
    )


def test_wait_list_stats_and_cancel_through_the_gateway(
    job_platform: JobPlatform, open_store: StoreOpener
) -> None:
    with client_of(job_platform, "dana") as dana, client_of(job_platform, "erin") as erin:
        job_id = create_job(job_platform, open_store, "dana", 3)
        seen: list[Job] = []
        ended = dana.wait_for_job(job_id, timeout=240, poll_interval=0.2, on_progress=seen.append)
        assert (ended.id, ended.status, ended.done, ended.failed) == (job_id, "done", 3, 0)
        assert ended.progress is not None and ended.progress.fraction == 1.0
        assert ended.progress.rate is not None and ended.progress.rate > 0
        assert ended.progress.eta_seconds == 0
        finished = [job.done + job.failed for job in seen]
        assert finished == sorted(finished) and finished[-1] == 3 and seen[-1] == ended

        assert dana.get_job(job_id).status == "done"
        assert job_id in [job.id for job in dana.list_jobs(type="chat")]
        (newest,) = dana.list_jobs(status="done", limit=1)
        assert newest.id == job_id
        assert dana.list_jobs(type=IDLE) == []
        stats = dana.job_stats()
        assert stats.done == 1 and stats.jobs_last_hour == 1 and stats.failed == 0

        with pytest.raises(ModelServeError) as hidden:
            erin.get_job(job_id)
        assert (hidden.value.status, hidden.value.code) == (404, "job_not_found")
        assert erin.list_jobs() == []

        idle = create_job(job_platform, open_store, "dana", 2, type=IDLE)
        with pytest.raises(ModelServeError) as waited:
            dana.wait_for_job(idle, timeout=0.5, poll_interval=0.2)
        assert waited.value.code == "timeout" and waited.value.status is None
        assert waited.value.details["id"] == idle and waited.value.details["status"] == "pending"
        cancelled = dana.cancel_job(idle)
        assert (cancelled.status, cancelled.done) == ("cancelled", 0)
        assert dana.cancel_job(idle).status == "cancelled"  # again: as it is
        assert dana.wait_for_job(idle, timeout=5).status == "cancelled"
        with pytest.raises(ModelServeError) as finished_already:
            dana.cancel_job(job_id)
        assert (finished_already.value.status, finished_already.value.code) == (
            409,
            "job_finished",
        )


def test_the_async_client_waits_as_the_sync_one(
    job_platform: JobPlatform, open_store: StoreOpener
) -> None:
    job_platform.user("fiona").close()
    job_id = create_job(job_platform, open_store, "fiona", 2)

    async def wait() -> tuple[Job, list[Job]]:
        async with AsyncClient(job_platform.gateway.url, job_platform.token("fiona")) as client:
            ended = await client.wait_for_job(job_id, timeout=240, poll_interval=0.2)
            return ended, await client.list_jobs()

    ended, listed = asyncio.run(wait())
    assert (ended.status, ended.done, ended.total) == ("done", 2, 2)
    assert [job.id for job in listed] == [job_id]


def test_the_cli_waits_with_a_progress_bar(
    job_platform: JobPlatform, open_store: StoreOpener
) -> None:
    job_platform.user("gus").close()
    job_id = create_job(job_platform, open_store, "gus", 2)
    waited = modelserve(job_platform, "gus", "jobs", "wait", job_id, "--poll-interval", "0.2")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] == "done"
    last = waited.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert " 2/2, " in last and "items/s, ETA 00:00, done" in last, waited.stderr

    listed = modelserve(job_platform, "gus", "jobs", "list", "--type", "chat")
    assert [job["id"] for job in json.loads(listed.stdout)] == [job_id]
    assert json.loads(modelserve(job_platform, "gus", "jobs", "stats").stdout)["done"] == 1

    idle = create_job(job_platform, open_store, "gus", 1, type=IDLE)
    cancelled = modelserve(job_platform, "gus", "jobs", "cancel", idle)
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    gave_up = modelserve(job_platform, "gus", "jobs", "wait", idle, "--max-wait", "5")
    assert gave_up.returncode == 3 and json.loads(gave_up.stdout)["status"] == "cancelled"
    missing = modelserve(job_platform, "gus", "jobs", "get", "job_missing")
    assert missing.returncode == 1
    assert json.loads(missing.stderr)["error"]["code"] == "job_not_found"


def test_an_evaluation_from_the_client_to_its_result_and_examples(
    job_platform: JobPlatform,
) -> None:
    dataset = put_dataset(job_platform, [*arithmetic(2), "not json"])
    with client_of(job_platform, "hana") as hana:
        queued = hana.eval_job(job_platform.model, "client-eval", dataset, max_tokens=16)
        assert (queued.type, queued.dataset, queued.result) == (
            "eval",
            f"s3://{job_platform.bucket}/datasets/{dataset}",
            None,
        )
        seen: list[EvalJob] = []
        ended = hana.wait_for_job(queued, timeout=240, poll_interval=0.2, on_progress=seen.append)
        assert isinstance(ended, EvalJob) and ended.status == "done", ended
        assert ended.result is not None  # the type's route answers done with its result
        assert (ended.result.total_samples, ended.result.failed) == (2, 1)
        assert ended.result.accuracy == ended.result.correct / 2
        assert ended.result.avg_loss is not None and ended.result.avg_loss > 0
        assert all(job.result is None for job in seen if job.status != "done")
        assert hana.get_eval_job(queued.job_id).result == ended.result
        assert [job.job_id for job in hana.list_eval_jobs()] == [queued.job_id]

        page = hana.eval_examples(queued.job_id)
        assert (page.total, [e.line for e in page.examples]) == (3, [1, 2, 3])
        judged, bad = page.examples[:2], page.examples[2]
        assert sum(bool(e.correct) for e in judged) == ended.result.correct
        assert bad.error is not None and bad.error["code"] == "invalid_example"
        assert [e.index for e in hana.eval_examples(queued.job_id, offset=1, limit=1).examples] == [
            1
        ]
        generic = hana.get_job(queued.job_id)
        assert (generic.type, generic.done, generic.failed) == ("eval", 2, 1)


def test_queued_generation_through_the_async_client(job_platform: JobPlatform) -> None:
    job_platform.user("ivan").close()

    async def generate() -> tuple[Generation, Generation]:
        async with AsyncClient(job_platform.gateway.url, job_platform.token("ivan")) as client:
            queued = await client.generate(
                job_platform.model, ["Say yes.", "Say no."], max_tokens=4, temperature=0
            )
            ended = await client.wait_for_job(queued, timeout=240, poll_interval=0.2)
            return queued, await client.get_generation(ended.job_id)

    queued, ended = asyncio.run(generate())
    assert queued.status == "pending" and queued.generations is None
    assert ended.status == "done" and ended.generations is not None
    assert [(g.index, g.prompt) for g in ended.generations] == [(0, "Say yes."), (1, "Say no.")]
    assert all(g.text and g.error is None for g in ended.generations)


def test_the_cli_runs_an_evaluation_and_a_data_generation_and_waits(
    job_platform: JobPlatform,
) -> None:
    job_platform.user("jack").close()
    dataset = put_dataset(job_platform, arithmetic(2))
    evaluated = modelserve(
        job_platform, "jack", "eval", "run", "--model", job_platform.model,
        "--dataset", dataset, "--max-tokens", "16", "--wait", "--poll-interval", "0.2",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    ended = json.loads(evaluated.stdout)
    assert ended["status"] == "done" and ended["name"] == dataset.removesuffix(".jsonl")
    assert ended["result"]["total_samples"] == 2
    assert " 2/2, " in evaluated.stderr.replace("\r", "\n").strip().splitlines()[-1]
    examples = modelserve(job_platform, "jack", "eval", "examples", ended["job_id"])
    assert [e["line"] for e in json.loads(examples.stdout)["examples"]] == [1, 2]

    output_dir = f"client-{uuid.uuid4().hex[:8]}"
    generated = modelserve(
        job_platform, "jack", "datagen", "run", "--model", job_platform.model,
        "--num-examples", "2", "--overgenerate", "1", "--max-tokens", "48",
        "--output-dir", output_dir, "--wait", "--poll-interval", "0.2",
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    job = json.loads(generated.stdout)
    assert job["status"] == "done" and job["examples"] is not None, job
    assert job["output_uri"] == f"s3://{job_platform.bucket}/datagen/jack/{output_dir}"
    assert sum(shard["examples"] for shard in job["shards"]) == job["examples"]
    again = json.loads(modelserve(job_platform, "jack", "datagen", "get", job["job_id"]).stdout)
    assert again["shards"] == job["shards"]


def doc_examples(platform: JobPlatform) -> list[str]:
    """The Python blocks of docs/client.md's Jobs and Batches sections, made small enough
    for SmolLM2 here: its model, fewer examples and tokens, shorter polls."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "client.md").read_text()
    section = page[page.index("\n### Jobs\n") : page.index("\n## Errors\n")]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    smaller = {
        '"qwen3"': repr(platform.model),
        "num_examples=100": "num_examples=2",
        'domain="math", shard_size=50': 'domain="math", overgenerate=1.0, max_tokens=48',
        "max_tokens=64": "max_tokens=8",
        "poll_interval=5": "poll_interval=0.2",
        "time.sleep(5)": "time.sleep(0.2)",
    }
    for old, new in smaller.items():
        assert any(old in block for block in blocks), old
        blocks = [block.replace(old, new) for block in blocks]
    return blocks


def test_the_job_examples_of_docs_client_md_run(
    job_platform: JobPlatform,
    open_store: StoreOpener,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = doc_examples(job_platform)
    assert len(blocks) == 5
    job_platform.store.put(
        job_platform.bucket, "datasets/math_eval.jsonl", ("\n".join(arithmetic(2)) + "\n").encode()
    )
    request = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": job_platform.model,
            "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": 4,
        },
    }
    (tmp_path / "requests.jsonl").write_text(json.dumps(request) + "\n")
    monkeypatch.chdir(tmp_path)
    with client_of(job_platform, "kate") as client:
        monkeypatch.setenv("GATEWAY_URL", job_platform.gateway.url)
        monkeypatch.setenv("MODELSERVE_TOKEN", job_platform.token("kate"))
        idle = create_job(job_platform, open_store, "kate", 1, type=IDLE)
        scope = {"client": client, "job_id": idle}
        for block in blocks:
            exec(compile(block, "docs/client.md", "exec"), scope)
        assert client.get_job(idle).status == "cancelled"
    printed = capsys.readouterr().out
    assert "Accuracy: " in printed and re.search(r'"custom_id": ?"a"', printed), printed
