"""`make dev` (modelserve-testbed up) brings the platform up and Ctrl-C leaves nothing running."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg

from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import descendants


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
        started = descendants([up.pid]) - {up.pid}
        # etcd, 3 control-plane programs, kwok, postgres, 2 minio, llm, operator
        assert len(started) >= 10

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
        # The operator reconciles what is applied: the CPU example becomes Ready.
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
            timeout=60,
            what="the example ModelServe to become Ready",
        )

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=120) == 0, (tmp_path / "up.log").read_text()
        alive = {pid for pid in started if Path(f"/proc/{pid}").exists() and not _zombie(pid)}
        assert not alive, f"left running: {alive}"
    finally:
        if up.poll() is None:
            up.kill()
        log.close()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
