"""The `modelserve` command as a person uses it, against `make dev`'s platform (the
session's one `dev`): login saves a private config that later commands use and logout
removes; API keys made, listed and revoked (a revoked key is refused); tables and JSON;
a chat streamed from the llama.cpp server (and AsyncClient.chat_stream), and a
conversation on stdin; `serve --wait` on the test bed's cluster (Ready, or exit 3 for a
server that fails), the new server's logs, and its stop.

Each command runs as its own process, with a config folder of the test's own and no
token in its environment unless the test gives one."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from modelserve.client import AsyncClient
from modelserve.testbed.doc_scripts import DevPlatform
from modelserve.testbed.polling import wait_for

SERVED = "smollm2-135m-instruct"  # what make dev serves
CLI = Path(sys.executable).parent / "modelserve"


def _run(
    config: Path, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(config.parent),
            "XDG_CONFIG_HOME": str(config),
            **env,
        },
        check=False,
    )


def _ok(ran: subprocess.CompletedProcess[str]) -> Any:
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)


def _error(ran: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert (ran.returncode, ran.stdout) == (1, ""), ran
    error: dict[str, Any] = json.loads(ran.stderr.splitlines()[-1])["error"]
    return error


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "xdg"


def test_login_saves_a_private_config_that_later_commands_use(
    dev: DevPlatform, config: Path
) -> None:
    env = dev.env()
    url, password = env["GATEWAY_URL"], env["GATEWAY_ADMIN_PASSWORD"]
    saved = config / "modelserve" / "config.json"

    wrong = _run(
        config,
        "--url",
        url,
        "login",
        "--username",
        "admin",
        "--password-stdin",
        stdin="not-the-password\n",
    )
    assert _error(wrong)["code"] == "invalid_credentials"
    assert not saved.exists()

    signed_in = _ok(
        _run(
            config,
            "--url",
            url,
            "login",
            "--username",
            "admin",
            "--password-stdin",
            stdin=password + "\n",
        )
    )
    assert (signed_in["url"], signed_in["username"], signed_in["config"]) == (
        url,
        "admin",
        str(saved),
    )
    assert "token" not in signed_in
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    written = json.loads(saved.read_text())
    assert written["url"] == url and written["token"].count(".") == 2  # a JWT

    # No URL and no token given: both come from the saved login.
    assert _ok(_run(config, "whoami"))["username"] == "admin"
    servers = _ok(_run(config, "status"))  # piped: JSON
    assert SERVED in {server["model"] for server in servers}
    table = _run(config, "--output", "table", "status")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "SERVER",
        "ID",
        "NAME",
        "MODEL",
        "RUNTIME",
        "READY",
        "STATUS",
        "MESSAGE",
    ]
    assert any(SERVED in row.split() for row in rows)
    models = _run(config, "models", "--output", "table")  # --output after the command too
    assert models.stdout.split()[:3] == ["ID", "NAME", "ORIGIN"], models.stderr

    # The saved token goes to the gateway it came from only: the same gateway under
    # another name gets no token.
    elsewhere = url.replace("127.0.0.1", "localhost")
    assert _error(_run(config, "--url", elsewhere, "whoami"))["status"] == 401

    # A config file that others may read is refused, as ssh refuses such a key.
    saved.chmod(0o644)
    refused = _error(_run(config, "whoami"))
    assert refused["code"] == "config_not_private" and "chmod 600" in refused["message"]
    saved.chmod(0o600)

    assert _ok(_run(config, "logout")) == {"logged_out": True, "config": str(saved)}
    assert not saved.exists()
    assert _ok(_run(config, "logout"))["logged_out"] is False
    anonymous = _error(_run(config, "--url", url, "whoami"))
    assert (anonymous["status"], anonymous["code"]) == (401, "token_missing")


def test_api_keys_are_made_listed_and_revoked(dev: DevPlatform, config: Path) -> None:
    env = dev.env()
    url = env["GATEWAY_URL"]
    # API keys belong to the gateway's accounts: sign in as its first admin.
    _ok(
        _run(config, "--url", url, "login", "--username", "admin", "--password-stdin",
             stdin=env["GATEWAY_ADMIN_PASSWORD"] + "\n")
    )  # fmt: skip
    jwt = json.loads((config / "modelserve" / "config.json").read_text())["token"]
    name = f"cli-{uuid.uuid4().hex[:8]}"

    created_run = _run(config, "keys", "create", name, "--expires-in-days", "1")
    created = _ok(created_run)
    assert "only" in created_run.stderr  # the key is shown once
    assert created["name"] == name and created["key"].startswith("msk_")
    key_id, key = created["id"], created["key"]

    listed = _ok(_run(config, "keys", "list"))
    assert key_id in {entry["id"] for entry in listed}
    assert all("key" not in entry for entry in listed)
    table = _run(config, "--output", "table", "keys", "list")
    assert table.stdout.split()[:4] == ["ID", "NAME", "CREATED", "EXPIRES"]
    assert any(line.split()[:2] == [key_id, name] for line in table.stdout.splitlines())
    assert _ok(_run(config, "--token", key, "whoami"))["api_key"] == key_id

    # The key saved as the login: later commands use it.
    saved = _ok(_run(config, "login", "--api-key-stdin", stdin=key + "\n"))
    assert (saved["url"], saved["username"], saved["expires_at"]) == (url, "admin", None)
    assert _ok(_run(config, "whoami"))["api_key"] == key_id

    # Revoked with the JWT ($MODELSERVE_TOKEN wins over the saved key).
    admin = {"MODELSERVE_TOKEN": jwt}
    assert _ok(_run(config, "keys", "revoke", key_id, **admin)) == {
        "id": key_id,
        "revoked": True,
    }
    assert key_id not in {entry["id"] for entry in _ok(_run(config, "keys", "list", **admin))}

    def refused() -> dict[str, Any] | None:
        ran = _run(config, "whoami")
        return _error(ran) if ran.returncode else None

    error = wait_for(refused, timeout=30, what="the revoked key to be refused")
    assert error["status"] == 401
    gone = _error(_run(config, "keys", "revoke", key_id, **admin))
    assert (gone["status"], gone["code"]) == (404, "key_not_found")


def test_chat_streams_and_keeps_a_conversation(dev: DevPlatform, config: Path) -> None:
    env = dev.env()
    where = {"GATEWAY_URL": env["GATEWAY_URL"], "MODELSERVE_TOKEN": env["MODELSERVE_TOKEN"]}
    args = [
        str(CLI),
        "--output",
        "text",
        "chat",
        SERVED,
        "Count from 1 to 100, one per line.",
        "--max-tokens",
        "160",  # long enough that its tokens cannot all come in one read
        "--temperature",
        "0",
    ]
    with subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": os.environ["PATH"], "XDG_CONFIG_HOME": str(config), **where},
    ) as streaming:
        assert streaming.stdout is not None
        pieces: list[tuple[bytes, bool]] = []
        while piece := os.read(streaming.stdout.fileno(), 4096):
            pieces.append((piece, streaming.poll() is None))
        assert streaming.wait(timeout=120) == 0
    text = b"".join(piece for piece, _ in pieces).decode()
    assert text.strip() and not text.lstrip().startswith("{")
    # The tokens came in several pieces, the first while the command still ran.
    assert len(pieces) > 1 and pieces[0][1]

    whole = _run(
        config,
        "--output",
        "text",
        "chat",
        SERVED,
        "Say hi.",
        "--no-stream",
        "--max-tokens",
        "8",
        **where,
    )
    assert whole.returncode == 0 and whole.stdout.strip(), whole.stderr
    piped = _ok(_run(config, "chat", SERVED, "Say hi.", "--max-tokens", "8", **where))
    assert piped["object"] == "chat.completion" and piped["choices"]

    # Without MESSAGE: one turn per line of stdin; JSON gives one completion per line,
    # and the second turn is asked with the first turn and its answer.
    talk = _run(
        config,
        "chat",
        SERVED,
        "--max-tokens",
        "8",
        stdin="My name is Ada.\n\nWhat is my name?\n",
        **where,
    )
    assert talk.returncode == 0, talk.stderr
    first, second = (json.loads(line) for line in talk.stdout.splitlines())
    assert second["usage"]["prompt_tokens"] > (
        first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    )
    spoken = _run(
        config,
        "--output",
        "text",
        "chat",
        SERVED,
        "--max-tokens",
        "8",
        stdin="Hello.\nAnd again.\n",
        **where,
    )
    assert spoken.returncode == 0 and len(spoken.stdout.splitlines()) >= 2, spoken.stderr

    # AsyncClient.chat_stream: the same stream, as an async iterator.
    pieces_async = asyncio.run(_streamed(where))
    assert len(pieces_async) > 1 and "".join(pieces_async).strip()


async def _streamed(where: dict[str, str]) -> list[str]:
    async with AsyncClient(where["GATEWAY_URL"], where["MODELSERVE_TOKEN"]) as client:
        messages = [{"role": "user", "content": "Count from 1 to 10."}]
        stream = client.chat_stream(SERVED, messages, max_tokens=16, temperature=0)
        return [chunk.content async for chunk in stream if chunk.content]


def test_serve_waits_until_ready_then_logs_and_stop(dev: DevPlatform, config: Path) -> None:
    env = dev.env()
    where = {"GATEWAY_URL": env["GATEWAY_URL"], "MODELSERVE_TOKEN": env["MODELSERVE_TOKEN"]}
    served_name = f"cli-wait-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    ran = _run(
        config,
        "serve",
        "--model-uuid",
        env["SMOLLM2_MODEL_UUID"],
        "--runtime",
        "llamacpp",
        "--served-name",
        served_name,
        "--runtime-params",
        "--ctx-size 512 --threads 1 --parallel 1",
        "--wait",
        "--poll-interval",
        "1",
        "--max-wait",
        "240",
        **where,
    )
    server = _ok(ran)
    server_id = server["server_id"]
    try:
        assert (server["status"], server["model"], server["ready_replicas"]) == (
            "Ready",
            served_name,
            1,
        )
        # Piped stderr: a line per change of state, the last one Ready.
        states = ran.stderr.splitlines()
        assert states and all(line.startswith(f"{server['name']}: ") for line in states)
        assert " Ready 1/1 ready " in states[-1]
        print(f"serve --wait: Ready after {time.monotonic() - started:.1f} s")

        logs = _ok(_run(config, "logs", server_id, "--lines", "20", **where))
        assert logs["kind"] == "server" and logs["pods"][0]["container"] == "server"
        text = _run(config, "--output", "text", "logs", server_id, "--lines", "5", **where)
        assert text.returncode == 0 and text.stdout.startswith("==> "), text.stderr
    finally:
        stopped = _ok(_run(config, "stop", server_id, **where))
    assert stopped["status"] == "Stopping"


def test_serve_wait_exits_3_for_a_server_that_fails(dev: DevPlatform, config: Path) -> None:
    env = dev.env()
    where = {"GATEWAY_URL": env["GATEWAY_URL"], "MODELSERVE_TOKEN": env["MODELSERVE_TOKEN"]}
    ran = _run(
        config,
        "serve",
        "--model-uuid",
        env["SMOLLM2_MODEL_UUID"],
        "--runtime",
        "llamacpp",
        "--served-name",
        f"cli-fail-{uuid.uuid4().hex[:6]}",
        "--runtime-params=--no-such-option",  # with `=`: a value that looks like an option
        "--wait",
        "--poll-interval",
        "1",
        "--failed-for",
        "0",
        "--max-wait",
        "180",
        **where,
    )
    assert ran.returncode == 3, ran.stderr
    server = json.loads(ran.stdout)
    try:
        assert server["status"] == "Failed"
        assert ran.stderr.splitlines()[-1].startswith(
            f"modelserve: server {server['server_id']} Failed: "
        )
    finally:
        _ok(_run(config, "stop", server["server_id"], **where))
