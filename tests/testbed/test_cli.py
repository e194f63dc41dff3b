"""`make dev` (modelserve-testbed up) brings the platform up and Ctrl-C leaves nothing running."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg

from modelserve.common.database import open_pool
from modelserve.jobs.store import JobStore
from modelserve.testbed.llm import MODEL_ALIAS
from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import descendants
from modelserve.testbed.seeding import SMOLLM2_MODEL_UUID, SMOLLM2_NAME
from modelserve.testbed.stack import (
    FIRST_DOWNLOAD,
    GATEWAY_ADMIN,
    GATEWAY_CHAT,
    GATEWAY_JOBS,
    GATEWAY_SIGN_IN,
    ROUTE_CHAT,
)


def read_env(path: Path) -> dict[str, str]:
    """The exports of the env file `up` writes, as a dict (values are shell-quoted)."""
    script = f"set -a; . {path}; env -0"
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def test_up_runs_every_component_and_ctrl_c_stops_them_all(tmp_path: Path) -> None:
    state = tmp_path / "dev"
    cli = Path(sys.executable).parent / "modelserve-testbed"
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [cli, "up", "--any-ports", "--state", state], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        env_file = state / "env"
        wait_for(
            lambda: up.poll() is None and env_file.exists() and up.pid,
            timeout=300,
            what="the test bed to come up",
        )
        assert up.poll() is None, (tmp_path / "up.log").read_text()
        env = read_env(env_file)

        def summary() -> str | None:
            printed = (tmp_path / "up.log").read_text()
            return printed if "Ctrl-C stops everything." in printed else None

        printed = wait_for(summary, timeout=10, what="the summary")
        assert FIRST_DOWNLOAD in printed
        assert GATEWAY_SIGN_IN in printed and GATEWAY_CHAT in printed and ROUTE_CHAT in printed
        assert GATEWAY_JOBS in printed
        started = descendants([up.pid]) - {up.pid}
        # etcd, 3 control-plane programs, kwok, postgres, 2 minio, llm, operator,
        # contract, download, jobs, gateway, traefik, and the served model's llama-server
        assert len(started) >= 16
        assert any("llama-server" in _command(pid) for pid in started)

        nodes = subprocess.run(
            ["kubectl", "get", "nodes", "-o", "name"], env=env, capture_output=True, text=True
        )
        assert nodes.stdout.split() == ["node/cpu-0", "node/gpu-a100-0", "node/gpu-l4-0"]
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        minio = httpx.get(f"http://{env['MINIO_ENDPOINT']}/minio/health/live", timeout=5)
        assert minio.status_code == 200
        models = httpx.get(f"{env['MODEL_SERVER_URL']}/models", timeout=5).json()
        assert models["data"][0]["id"] == env["MODEL_SERVER_MODEL"]
        _gateway_chat_works(env)
        _jobs_work(env)
        # The operator reconciles what is applied: the CPU example's pods run the model
        # make dev downloaded, and become Ready.
        example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "llamacpp-cpu.yaml"
        subprocess.run(["kubectl", "apply", "-f", example], env=env, check=True)
        wait_for(
            lambda: (
                subprocess.run(
                    ["kubectl", "get", "ms", "smollm2-cpu", "-o", "jsonpath={.status.phase}"],
                    env=env,
                    capture_output=True,
                    text=True,
                ).stdout
                == "Ready"
            ),
            timeout=180,
            what="the example ModelServe to become Ready",
        )
        _first_download_works(env)

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=120) == 0, (tmp_path / "up.log").read_text()
        alive = {pid for pid in started if Path(f"/proc/{pid}").exists() and not _zombie(pid)}
        assert not alive, f"left running: {alive}"
    finally:
        if up.poll() is None:
            up.kill()
        log.close()


def _first_download_works(env: dict[str, str]) -> None:
    """make dev downloaded the seeded SmolLM2 into the platform: the summary's curl, run as
    printed, answers with that job, ready."""
    assert env["SMOLLM2_MODEL_UUID"] == SMOLLM2_MODEL_UUID
    curl = ["bash", "-c", f"{FIRST_DOWNLOAD} -sS -w ' %{{http_code}}'"]
    answer = subprocess.run(curl, env=env, capture_output=True, text=True, check=True).stdout
    body, status = answer.rsplit(" ", 1)
    assert status == "200", answer
    assert json.loads(body)["state"] == "ready"

    headers = {"Authorization": f"Bearer {env['MODELSERVE_TOKEN']}"}
    with httpx.Client(base_url=env["DOWNLOAD_URL"], headers=headers, timeout=10) as client:

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = client.get(f"/status/{SMOLLM2_MODEL_UUID}").json()
            return job if job["state"] in ("ready", "failed", "cancelled") else None

        job = wait_for(finished, timeout=120, what="the first download to end")
        assert job["state"] == "ready", job
        models = client.get("/models").json()
    assert [(m["id"], m["name"], m["architecture"], m["verified"]) for m in models] == [
        (SMOLLM2_MODEL_UUID, SMOLLM2_NAME, "llama", True)
    ]


def _gateway_chat_works(env: dict[str, str]) -> None:
    """The summary's commands, run as printed: a token, a chat completion through the
    gateway, the same through Traefik's route; the token lists the model in /v1/models."""
    script = f'{GATEWAY_SIGN_IN}\nprintf "%s\\n" "$TOKEN"\n{GATEWAY_CHAT}'
    answer = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stderr
    token, body = answer.stdout.split("\n", 1)
    chat = json.loads(body)
    assert chat["object"] == "chat.completion", chat
    assert chat["model"] == MODEL_ALIAS, chat
    assert chat["choices"][0]["message"]["content"].strip(), chat

    # Traefik's per-server route, the seeds' body (no model): the same server answers.
    routed = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", f"TOKEN={token}\n{ROUTE_CHAT}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert routed.returncode == 0, routed.stderr
    chat = json.loads(routed.stdout)
    assert chat["object"] == "chat.completion", chat
    assert chat["choices"][0]["message"]["content"].strip(), chat

    models = httpx.get(
        f"{env['GATEWAY_URL']}/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert models.status_code == 200, models.text
    assert env["MODEL_SERVER_MODEL"] in [model["id"] for model in models.json()["data"]]


def _queue_chat_job(database_url: str, owner: str) -> str:
    """A chat job of one item for `owner`, queued in the jobs service's database."""

    async def queue() -> str:
        pool = await open_pool(database_url, size=1, wait=5.0)
        try:
            job = await JobStore(pool).create(
                type="chat",
                owner=owner,
                team=None,
                model=MODEL_ALIAS,
                spec={},
                inputs=[
                    {
                        "model": MODEL_ALIAS,
                        "messages": [{"role": "user", "content": "Say hi."}],
                        "max_tokens": 4,
                        "temperature": 0,
                    }
                ],
            )
        finally:
            await pool.close()
        return job.id

    return asyncio.run(queue())


def _jobs_work(env: dict[str, str]) -> None:
    """make dev's jobs service, behind the gateway: a job queued for the gateway's first
    admin is run by its worker as that admin (a token from the gateway's POST
    /auth/delegate) through the gateway to the model, and is seen done through the
    gateway's /jobs/{id}; the summary's /jobs/stats command, run as printed, counts it."""
    assert httpx.get(f"{env['JOBS_URL']}/health", timeout=5).status_code == 200
    job_id = _queue_chat_job(env["JOBS_DATABASE_URL"], GATEWAY_ADMIN)
    script = f"{GATEWAY_SIGN_IN}\nprintf '%s\\n' \"$TOKEN\""
    signed_in = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert signed_in.returncode == 0, signed_in.stderr
    token = signed_in.stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}

    def finished() -> dict[str, Any] | None:
        answer = httpx.get(f"{env['GATEWAY_URL']}/jobs/{job_id}", headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job if job["status"] in ("done", "failed", "cancelled") else None

    job = wait_for(finished, timeout=120, what=f"job {job_id} to finish")
    assert (job["status"], job["done"], job["failed"]) == ("done", 1, 0), job
    stats = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", f"TOKEN={token}\n{GATEWAY_JOBS}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stats.returncode == 0, stats.stderr
    counts = json.loads(stats.stdout)
    assert counts["done"] >= 1 and counts["jobs_last_hour"] >= 1, counts


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
