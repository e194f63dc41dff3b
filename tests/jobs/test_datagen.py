"""Data-generation jobs through the real gateway, jobs service and SmolLM2: shards in the
platform store with no near duplicates, the seed set given (a file in the store, inline,
or the shipped one) used in the prompts, resuming a cancelled and a failed job,
per-caller visibility, one job of concurrent creates for one folder, and output folders
and seed files outside the caller's folder refused."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from modelserve.jobs.datagen.seeds import default_seeds
from modelserve.jobs.datagen.similarity import rouge_l, tokens
from modelserve.testbed.gateway_accounts import bearer_client
from modelserve.testbed.job_platform import JobPlatform
from modelserve.testbed.polling import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]

SEEDS = [
    {
        "instruction": "Add the two numbers and give only the sum.",
        "input": "12 and 30",
        "output": "42",
    },
    {"instruction": "Multiply the numbers.", "input": "6 and 7", "output": "42"},
    {"instruction": "What is half of the given number?", "input": "84", "output": "42"},
    {"instruction": "Round the number to the nearest ten.", "input": "47", "output": "50"},
    {"instruction": "Is the number even or odd?", "input": "15", "output": "odd"},
]
# Small and quick on a 2-core machine; a task of SmolLM2 fits in 64 tokens.
SMALL = {"max_tokens": 64, "examples_per_prompt": 3}


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def finished(client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """The job once it has finished and its shards are written (`examples` is set)."""

    def check() -> dict[str, Any] | None:
        answer = client.get(f"/data_gen/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        ended = job["status"] in ("done", "failed", "cancelled")
        return job if ended and job["examples"] is not None else None

    return wait_for(check, timeout=timeout, what=f"data-generation job {job_id}", interval=0.3)


def shard_lines(platform: JobPlatform, job: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Each listed shard's lines, read from the store; checks the listing against it."""
    bucket, _, prefix = job["output_uri"].removeprefix("s3://").partition("/")
    stored = platform.store.contents(bucket, prefix + "/")
    assert sorted(stored) == [shard["key"] for shard in job["shards"]]
    shards = []
    for number, shard in enumerate(job["shards"]):
        assert shard["name"] == f"shard-{number:05d}.jsonl"
        assert shard["uri"] == f"s3://{bucket}/{shard['key']}"
        lines = [json.loads(line) for line in stored[shard["key"]].decode().splitlines()]
        assert len(lines) == shard["examples"] and len(stored[shard["key"]]) == shard["bytes"]
        shards.append(lines)
    return shards


def item_inputs(platform: JobPlatform, job_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(platform.jobs_database) as conn:
        rows = conn.execute(
            "SELECT input FROM job_items WHERE job_id = %s ORDER BY index", [job_id]
        ).fetchall()
    return [row[0] for row in rows]


def test_shards_from_a_seed_file_without_near_duplicates(job_platform: JobPlatform) -> None:
    user = unique("dana")
    seed_key = f"datagen/{user}/seeds/math.jsonl"
    job_platform.store.put(
        job_platform.bucket, seed_key, "".join(json.dumps(s) + "\n" for s in SEEDS).encode()
    )
    with job_platform.user(user) as dana:
        created = dana.post(
            "/data_gen/jobs",
            json={
                "model_id": job_platform.model,
                "strategy": "self_instruct",
                "config": {
                    "num_examples": 5,
                    "domain": "math",
                    "output_dir": "math/run-1",
                    "seed_file": "seeds/math.jsonl",
                    "shard_size": 2,
                    "overgenerate": 2.0,
                    **SMALL,
                },
            },
        )
        assert created.status_code == 202, created.text
        job = created.json()
        assert job["job_id"].startswith("datagen_") and job["type"] == "data_gen"
        assert job["status"] == "pending" and job["progress"]["total"] == 10
        assert job["output_uri"] == f"s3://{job_platform.bucket}/datagen/{user}/math/run-1"
        assert job["seed_set"] == {
            "source": f"s3://{job_platform.bucket}/{seed_key}",
            "count": len(SEEDS),
        }
        done = finished(dana, job["job_id"])
        # The shards through the gateway, for callers without access to the store.
        for shard in done["shards"]:
            content = dana.get(f"/data_gen/jobs/{done['job_id']}/shards/{shard['name']}")
            assert content.status_code == 200, content.text
            assert (
                content.content
                == job_platform.store.contents(job_platform.bucket, shard["key"])[shard["key"]]
            )
        unknown = dana.get(f"/data_gen/jobs/{done['job_id']}/shards/shard-99999.jsonl")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "shard_not_found"

    assert done["status"] == "done", done
    assert done["progress"]["done"] + done["progress"]["failed"] == 10
    # Every item was answered by the model: kept, or dropped for a reason counted.
    assert done["items_failed"] == 0
    # A short job looked at every answer; a full one may have left some unread.
    considered = done["examples"] + sum(done["rejected"].values())
    assert considered == 10 if done["short"] else considered <= 10
    assert 1 <= done["examples"] <= 5, done
    assert done["short"] == (done["examples"] < 5)
    shards = shard_lines(job_platform, done)
    assert all(len(lines) <= 2 for lines in shards) and all(
        len(lines) == 2 for lines in shards[:-1]
    )
    examples = [example for lines in shards for example in lines]
    assert len(examples) == done["examples"]
    for example in examples:
        assert set(example) == {"instruction", "input", "output"}
        assert example["instruction"].strip() and example["output"].strip()
    # No near duplicates among the shards' instructions, nor copies of the seeds.
    instructions = [tokens(e["instruction"]) for e in examples]
    for a, b in itertools.combinations(instructions, 2):
        assert rouge_l(a, b) < 0.7, (a, b)
    for a in instructions:
        assert all(rouge_l(a, tokens(s["instruction"])) < 0.7 for s in SEEDS)
    # The prompts showed tasks of this seed set, three each.
    seed_instructions = {s["instruction"] for s in SEEDS}
    inputs = item_inputs(job_platform, done["job_id"])
    assert len(inputs) == 10
    shown = [example["instruction"] for i in inputs for example in i["examples"]]
    assert len(shown) == 30 and set(shown) <= seed_instructions and len(set(shown)) >= 3


def test_resume_a_cancelled_job_keeps_what_it_had(job_platform: JobPlatform) -> None:
    user = unique("erin")
    with job_platform.user(user) as erin:
        created = erin.post(
            "/data_gen/jobs",
            json={
                "model_id": job_platform.model,
                "strategy": "self_instruct",
                "config": {
                    "num_examples": 4,
                    "output_dir": "resumed",
                    "seed_tasks": SEEDS,
                    "overgenerate": 2.0,
                    **SMALL,
                },
            },
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["job_id"]
        assert created.json()["seed_set"] == {"source": "inline", "count": len(SEEDS)}
        running = erin.post(f"/data_gen/jobs/{job_id}/resume")
        assert running.status_code == 409 and running.json()["error"]["code"] == "job_running"
        assert erin.post(f"/jobs/{job_id}/cancel").status_code == 200
        cancelled = finished(erin, job_id)
        assert cancelled["status"] == "cancelled"
        before = [e for lines in shard_lines(job_platform, cancelled) for e in lines]
        assert cancelled["progress"]["done"] + cancelled["progress"]["failed"] < 8

        resumed = erin.post(f"/data_gen/jobs/{job_id}/resume")
        assert resumed.status_code == 202, resumed.text
        assert resumed.json()["status"] in ("pending", "running")
        assert resumed.json()["resumes"] == 1 and resumed.json()["shards"] == []
        # Its items not run yet run now; new ones only if those are too few.
        assert resumed.json()["progress"]["total"] >= 8
        done = finished(erin, job_id)
        assert done["status"] == "done", done
        assert done["progress"]["done"] + done["progress"]["failed"] == done["progress"]["total"]
        after = [e for lines in shard_lines(job_platform, done) for e in lines]
        # The examples kept before come first, unchanged; the job only added to them.
        assert after[: len(before)] == before and len(after) == done["examples"]

        again = erin.post(f"/data_gen/jobs/{job_id}/resume")
        if done["examples"] == 4:
            assert again.status_code == 409 and again.json()["error"]["code"] == "job_complete"
        else:
            # Still short: the items the missing examples need are added.
            assert again.status_code == 202, again.text
            missing = 4 - done["examples"]
            added = again.json()["progress"]["total"] - done["progress"]["total"]
            assert added == missing * 2
            assert finished(erin, job_id)["status"] == "done"


def queue_unserved(client: httpx.Client, num_examples: int, output_dir: str) -> dict[str, Any]:
    """A data-generation job of a model nobody serves (its items fail): its view."""
    created = client.post(
        "/data_gen/jobs",
        json={
            "model_id": "no-such-model",
            "strategy": "self_instruct",
            "config": {"num_examples": num_examples, "output_dir": output_dir, "overgenerate": 1.0},
        },
    )
    assert created.status_code == 202, created.text
    job: dict[str, Any] = created.json()
    return job


def test_resume_a_failed_job_adds_its_items_again(job_platform: JobPlatform) -> None:
    user = unique("fay")
    with job_platform.user(user) as fay:
        job = queue_unserved(fay, 2, "nothing")
        # No seed set given: the shipped one.
        assert job["seed_set"] == {"source": "default", "count": len(default_seeds())}
        failed = finished(fay, job["job_id"])
        assert failed["status"] == "failed" and failed["examples"] == 0
        assert failed["shards"] == [] and failed["items_failed"] == 2
        resumed = fay.post(f"/data_gen/jobs/{job['job_id']}/resume")
        assert resumed.status_code == 202, resumed.text
        assert resumed.json()["progress"]["total"] == 4
        again = finished(fay, job["job_id"])
        assert again["status"] == "failed" and again["items_failed"] == 4
        assert again["resumes"] == 1
    inputs = item_inputs(job_platform, job["job_id"])
    shipped = {seed.instruction for seed in default_seeds()}
    assert len(inputs) == 4
    assert all({e["instruction"] for e in i["examples"]} <= shipped for i in inputs)


def item_errors(platform: JobPlatform, job_id: str) -> list[str | None]:
    """Each item's error code, in order (None: it did not fail)."""
    with psycopg.connect(platform.jobs_database) as conn:
        rows = conn.execute(
            "SELECT error->>'code' FROM job_items WHERE job_id = %s ORDER BY index", [job_id]
        ).fetchall()
    return [row[0] for row in rows]


def test_the_owner_resuming_a_job_asks_for_its_work_anew(job_platform: JobPlatform) -> None:
    """Items run as their job's owner, refused once the owner has revoked their sessions
    after queueing it (a password change). An admin resuming the job leaves it queued when
    it was, so its new items are refused too; its owner resuming it, signed in again, asks
    for the work anew, and it runs."""
    user = unique("ida")
    with job_platform.user(user) as ida:
        job_id = queue_unserved(ida, 1, "anew")["job_id"]
        finished(ida, job_id)
    [unserved] = item_errors(job_platform, job_id)
    assert unserved is not None and unserved != "owner_not_allowed"
    password = f"{user}-changed-password-2"
    with job_platform.admin() as admin:
        changed = admin.put(f"/users/{user}/password", json={"password": password})
        assert changed.status_code == 204, changed.text
        resumed = admin.post(f"/data_gen/jobs/{job_id}/resume")
        assert resumed.status_code == 202, resumed.text
        assert finished(admin, job_id)["resumes"] == 1
    assert item_errors(job_platform, job_id) == [unserved, "owner_not_allowed"]
    # Revocation is by whole seconds: a request in the second of the change is before it.
    time.sleep(1.1)
    signed = httpx.post(
        f"{job_platform.gateway.url}/auth/token",
        json={"username": user, "password": password},
        timeout=30,
    )
    assert signed.status_code == 200, signed.text
    with bearer_client(job_platform.gateway.url, signed.json()["access_token"]) as ida:
        resumed = ida.post(f"/data_gen/jobs/{job_id}/resume")
        assert resumed.status_code == 202, resumed.text
        assert finished(ida, job_id)["resumes"] == 2
    assert item_errors(job_platform, job_id) == [unserved, "owner_not_allowed", unserved]


def test_each_caller_sees_their_own_jobs(job_platform: JobPlatform) -> None:
    owner, other = unique("gus"), unique("hal")
    with job_platform.user(owner) as gus, job_platform.user(other) as hal:
        job_id = queue_unserved(gus, 1, "mine")["job_id"]
        finished(gus, job_id)
        for answer in (
            hal.get(f"/data_gen/jobs/{job_id}"),
            hal.post(f"/data_gen/jobs/{job_id}/resume"),
        ):
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "job_not_found"
        listed = gus.get("/data_gen/jobs", params={"limit": 10})
        assert listed.status_code == 200 and listed.headers["X-Total-Count"] == "1"
        assert [j["job_id"] for j in listed.json()] == [job_id]
        assert hal.get("/data_gen/jobs").json() == []
        assert [j["id"] for j in gus.get("/jobs", params={"type": "data_gen"}).json()] == [job_id]
    with job_platform.admin() as admin:
        assert admin.get(f"/data_gen/jobs/{job_id}").status_code == 200
        everyone = admin.get("/data_gen/jobs", params={"limit": 1000}).json()
        assert job_id in {j["job_id"] for j in everyone}


def test_paths_outside_the_callers_folder_are_refused(job_platform: JobPlatform) -> None:
    user = unique("ivy")
    body = {"model_id": job_platform.model, "strategy": "self_instruct"}
    with job_platform.user(user) as ivy:

        def create(**config: Any) -> httpx.Response:
            return ivy.post(
                "/data_gen/jobs", json={**body, "config": {"num_examples": 1, **config}}
            )

        for output_dir, status, code in [
            ("/datagen/someone-else/out", 403, "path_forbidden"),
            ("/models/smollm2", 403, "path_forbidden"),
            (f"s3://{job_platform.bucket}/jobs/x", 403, "path_forbidden"),
            ("s3://another-bucket/datagen/x", 400, "wrong_bucket"),
            ("../someone-else/out", 400, "invalid_path"),
            ("out//x", 400, "invalid_path"),
        ]:
            refused = create(output_dir=output_dir)
            assert refused.status_code == status, (output_dir, refused.text)
            assert refused.json()["error"]["code"] == code
            assert user in refused.json()["error"]["message"] or status == 400
        refused = create(output_dir="ok", seed_file="/datagen/someone-else/seeds.jsonl")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "path_forbidden"
        missing = create(output_dir="ok", seed_file="none.jsonl")
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == "seed_file_not_found"
        bad = create(output_dir="ok", seed_tasks=[{"instruction": "no output"}])
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_seeds"
        assert create(output_dir="ok", num_examples=0).status_code == 422
        unknown = ivy.post("/data_gen/jobs", json={**body, "strategy": "evol", "config": {}})
        assert unknown.status_code == 422
        # An output folder already written to by another job is refused.
        job_platform.store.put(job_platform.bucket, f"datagen/{user}/used/shard-00000.jsonl", b"")
        taken = create(output_dir="used")
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "output_dir_in_use"
        assert ivy.get("/data_gen/jobs").json() == []


def create_at_once(client: httpx.Client, body: dict[str, Any], count: int) -> list[int]:
    """`count` POST /data_gen/jobs of `body` let go together; their status codes."""
    answers: list[httpx.Response] = []
    start = threading.Barrier(count)

    def create() -> None:
        start.wait(timeout=30)
        answers.append(client.post("/data_gen/jobs", json=body))

    threads = [threading.Thread(target=create) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == count
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"]["code"] == "output_dir_in_use", answer.text
    return sorted(answer.status_code for answer in answers)


def test_concurrent_creates_for_one_output_dir_make_one_job(job_platform: JobPlatform) -> None:
    # Creates for the same output_dir at the same moment: one is queued (202), the others
    # refused (409), never two jobs writing the same shards. Several rounds, so that a
    # check-then-insert race would show.
    with job_platform.user(unique("ida")) as ida:
        for round_ in range(4):
            config = {"num_examples": 1, "overgenerate": 1.0, "output_dir": f"raced-{round_}"}
            body = {"model_id": "no-such-model", "strategy": "self_instruct", "config": config}
            assert create_at_once(ida, body, 3) == [202, 409, 409]
        jobs = ida.get("/data_gen/jobs", params={"limit": 100}).json()
        assert sorted(job["config"]["output_dir"] for job in jobs) == [
            f"raced-{n}" for n in range(4)
        ]
