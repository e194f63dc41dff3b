"""Queued generation (`POST /generate`, seed 003) through the real gateway and SmolLM2:
the seed's payload queues a job on the engine, the generations come back in prompt order
and are what the same chat completion answers online; per caller."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from modelserve.testbed.job_platform import JobPlatform
from modelserve.testbed.polling import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]


def finished_generation(client: httpx.Client, job_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        answer = client.get(f"/generate/{job_id}")
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job if job["status"] in ("done", "failed", "cancelled") else None

    return wait_for(check, timeout=120, what=f"generation {job_id}", interval=0.5)


def test_generate_queues_prompts_and_gives_the_generations(job_platform: JobPlatform) -> None:
    prompts = ["What is 2+2?", "Name a colour.", "Say hello."]
    with job_platform.user("gina") as gina, job_platform.user("hugo") as hugo:
        # The seed's payload, with the model the platform serves.
        seed = gina.post(
            "/generate",
            json={
                "model": job_platform.model,
                "prompt": "What is 2+2?",
                "max_tokens": 8,
                "temperature": 0.7,
                "top_p": 0.9,
                "mode": "normal",
            },
        )
        assert seed.status_code == 202, seed.text
        assert seed.json()["type"] == "generate" and seed.json()["generations"] is None
        queued = gina.post(
            "/generate",
            json={
                "model_id": job_platform.model,
                "prompts": prompts,
                "max_tokens": 8,
                "temperature": 0,
            },
        )
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["job_id"]
        assert hugo.get(f"/generate/{job_id}").status_code == 404
        job = finished_generation(gina, job_id)
        one = finished_generation(gina, seed.json()["job_id"])
        online = [
            gina.post(
                "/v1/chat/completions",
                json={
                    "model": job_platform.model,
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": 8,
                    "temperature": 0,
                    "top_p": 0.9,
                },
            )
            for prompt in prompts
        ]
        listed = gina.get("/jobs", params={"type": "generate"})
        refused = [
            gina.post("/generate", json={"prompt": "no model"}),
            gina.post(
                "/generate", json={"model": job_platform.model, "prompt": "a", "prompts": ["b"]}
            ),
            gina.post("/generate", json={"model": job_platform.model, "prompt": "a", "mode": "x"}),
        ]

    assert job["status"] == "done" and job["progress"]["done"] == 3
    generations = job["generations"]
    assert [g["index"] for g in generations] == [0, 1, 2]
    assert [g["prompt"] for g in generations] == prompts
    assert all(g["error"] is None and g["finish_reason"] for g in generations)
    for generation, answer in zip(generations, online, strict=True):
        assert answer.status_code == 200, answer.text
        assert generation["text"] == answer.json()["choices"][0]["message"]["content"]
    assert one["status"] == "done" and len(one["generations"]) == 1
    assert one["generations"][0]["text"]
    assert {j["id"] for j in listed.json()} == {job_id, seed.json()["job_id"]}
    assert [r.status_code for r in refused] == [422, 422, 422]
