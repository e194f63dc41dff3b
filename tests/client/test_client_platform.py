"""Seed 003's workflow through modelserve.client against `make dev`'s platform (the
session's one `dev`, shared with tests/docs): health and GPUs, a checkpoint uploaded
from disk and registered, set active, a chat, the CLI's JSON, and a refusal as
ModelServeError. Its versions go under a name of their own, so that the registry page's
history (tests/docs/test_registry_doc.py) stays as the page says."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from modelserve.client import ActiveModel, AsyncClient, Client, HistoryEntry, ModelServeError
from modelserve.testbed.doc_scripts import DevPlatform

SERVED = "smollm2-135m-instruct"  # what make dev serves


def dev_env(dev: DevPlatform) -> dict[str, str]:
    """The variables of make dev's env file (`export KEY=value` lines)."""
    return dev.env()


def modelserve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "modelserve"
    return subprocess.run(
        [cli, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"GATEWAY_URL": env["GATEWAY_URL"], "MODELSERVE_TOKEN": env["MODELSERVE_TOKEN"]},
        check=False,
    )


async def _async_view(
    env: dict[str, str], name: str
) -> tuple[list[ActiveModel], list[HistoryEntry]]:
    async with AsyncClient(env["GATEWAY_URL"], env["MODELSERVE_TOKEN"]) as client:
        assert (await client.health()).status == "ok"
        return await client.active_models(name=name), await client.history(name=name)


def test_the_seed_s_workflow_through_the_client(dev: DevPlatform) -> None:
    env = dev_env(dev)
    suffix = uuid.uuid4().hex[:8]
    model_id, name = f"client-step-{suffix}", f"client-e2e-{suffix}"
    checkpoint = Path(env["SMOLLM2_GGUF"])
    with Client(env["GATEWAY_URL"], env["MODELSERVE_TOKEN"], timeout=120) as client:
        health = client.health()
        assert health.status == "ok" and SERVED in health.active_models
        assert client.gpu_stats().totals.capacity == 6  # the test bed's KWOK GPU nodes
        assert SERVED in {record.name.lower() for record in client.list_models()} | {SERVED}

        sent: list[tuple[int, int]] = []
        job = client.register_model(
            model_id,
            source="4090",
            tags="e2e,math",
            name=name,
            upload=checkpoint,
            on_progress=lambda done, total: sent.append((done, total)),
        )
        assert (job.model_id, job.kind) == (model_id, "register")
        size = checkpoint.stat().st_size
        assert sent[-1] == (size, size)
        assert client.wait_for_registration(model_id, timeout=180, poll_interval=0.5).state == (
            "ready"
        )
        (record,) = client.list_models(name=name, tag=["e2e", "math"], origin="register")
        assert (record.id, record.tags, record.size) == (model_id, ["e2e", "math"], size)
        assert record.sha256 is not None and len(record.sha256) == 64

        moved = client.set_active_model(model_id, reason="client e2e")
        assert (moved.id, moved.name, moved.changed, moved.servers) == (model_id, name, True, [])
        (active,) = client.active_models(name=name)
        assert (active.id, active.servers) == (model_id, [])

        chat = client.chat(SERVED, [{"role": "user", "content": "What is 2+2?"}], max_tokens=8)
        assert chat.object == "chat.completion" and chat.choices

        with pytest.raises(ModelServeError) as raised:
            client.set_active_model(f"no-such-version-{suffix}")
        assert (raised.value.status, raised.value.code) == (404, "model_not_found")

    actives, changes = asyncio.run(_async_view(env, name))
    assert [a.id for a in actives] == [model_id]
    assert [(c.action, c.to_id, c.reason) for c in changes] == [
        ("set_active", model_id, "client e2e")
    ]

    listed = modelserve(env, "active", "--name", name)
    assert listed.returncode == 0, listed.stderr
    assert [entry["id"] for entry in json.loads(listed.stdout)] == [model_id]
    refused = modelserve(env, "set-active", f"no-such-version-{suffix}")
    assert (refused.returncode, refused.stdout) == (1, "")
    error = json.loads(refused.stderr)["error"]
    assert (error["status"], error["code"]) == (404, "model_not_found")
