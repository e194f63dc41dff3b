"""The `modelserve` CLI: each command is the client's method, its answer JSON on stdout;
a refusal is the error's JSON on stderr and exit status 1. And its pure parts: where the
saved login's token may go, the private config file, tables, the choice between JSON and
tables, streamed chat chunks, and when a wait for a server gives up."""

from __future__ import annotations

import datetime as dt
import io
import json
import stat
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.client import Client, ModelServeError, Server
from modelserve.client.chunks import ChunkReader
from modelserve.client.cli import config, main, output, parser, run, serving, tables


def _client(seen: list[httpx.Request]) -> Client:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/models/active":
            return httpx.Response(200, json=[{"name": "m", "id": "v1", "uri": "s3://b/v1",
                                              "set_by": "admin", "set_at": "2026-12-05T20:00:00Z",
                                              "history_id": 3, "servers": []}])  # fmt: skip
        if request.url.path == "/models/set_active":
            return httpx.Response(
                404, json={"error": {"code": "model_not_found", "message": "no version v9"}}
            )
        return httpx.Response(200, json={"current": "quiet", "profiles": {}})

    return Client("http://gateway.test", "tok", transport=httpx.MockTransport(answer))


def _dump(answer: Any) -> Any:
    return [a.model_dump(mode="json") for a in answer] if isinstance(answer, list) else answer


def test_commands_are_the_client_s_methods() -> None:
    seen: list[httpx.Request] = []
    with _client(seen) as client:
        active = run(client, parser().parse_args(["active", "--name", "m"]))
        chosen = run(client, parser().parse_args(["power-profile", "quiet"]))
    assert [a["id"] for a in _dump(active)] == ["v1"]
    assert getattr(chosen, "current", None) == "quiet"
    assert [(r.method, r.url.path, r.url.query) for r in seen] == [
        ("GET", "/models/active", b"name=m"),
        ("POST", "/settings/power_profile", b""),
    ]
    assert json.loads(seen[1].content) == {"profile": "quiet"}


def test_a_refusal_is_json_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "http://127.0.0.1:1", "--token", "t", "health"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and json.loads(err)["error"]["code"] == "unreachable"


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as raised:
        parser().parse_args(["register", "v1"])  # neither --upload nor --uri
    assert raised.value.code == 2


def test_the_saved_token_goes_only_to_its_own_gateway() -> None:
    now = dt.datetime(2026, 12, 6, 20, 0, tzinfo=dt.UTC)
    saved = config.SavedLogin("http://gw:8200", "jwt", "ada", now + dt.timedelta(minutes=5))
    assert config.where(None, None, {}, saved, now) == config.Where("http://gw:8200", "jwt")
    # The environment's URL names another gateway: no token for it.
    other = {"GATEWAY_URL": "http://other:8200/"}
    assert config.where(None, None, other, saved, now) == config.Where("http://other:8200", None)
    # A token given wins over the saved one; no saved login: the local default.
    given = config.where(None, "msk_1", {}, saved, now)
    assert given == config.Where("http://gw:8200", "msk_1")
    assert config.where(None, None, {}, None, now).url == "http://127.0.0.1:8200"
    with pytest.raises(ModelServeError) as raised:
        config.where(None, None, {}, saved, now + dt.timedelta(minutes=6))
    assert raised.value.code == "login_expired"


def test_the_config_file_is_written_and_read_only_when_private(tmp_path: Path) -> None:
    path = config.config_path({"XDG_CONFIG_HOME": str(tmp_path)})
    assert path == tmp_path / "modelserve" / "config.json"
    assert config.config_path({"XDG_CONFIG_HOME": "relative"}).parts[-3:] == (
        ".config",
        "modelserve",
        "config.json",
    )
    login = config.SavedLogin("http://gw:8200", "jwt", "ada", None)
    config.save(path, login)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.load(path) == login
    path.chmod(0o640)
    with pytest.raises(ModelServeError) as raised:
        config.load(path)
    assert raised.value.code == "config_not_private"
    config.save(path, login)  # a new file in its place, private again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.remove(path) and not config.remove(path) and config.load(path) is None


def test_tables_align_the_chosen_columns() -> None:
    servers = [
        {"server_id": "u1", "name": "a", "model": "m", "runtime": "llamacpp", "replicas": 2,
         "ready_replicas": 1, "status": "Deploying", "message": "x" * 80},
        {"server_id": "u22", "name": "bb", "model": None, "runtime": "vllm", "replicas": 1,
         "ready_replicas": 1, "status": "Ready", "message": ""},
    ]  # fmt: skip
    lines = tables.table("status", servers).splitlines()
    assert lines[0].startswith("SERVER ID  NAME  MODEL  RUNTIME   READY  STATUS     MESSAGE")
    assert lines[1].startswith("u1         a     m      llamacpp  1/2    Deploying  xxx")
    assert lines[1].endswith("…") and len(lines[1].split()[-1]) == tables.WIDEST
    assert lines[2] == "u22        bb    -      vllm      1/1    Ready      -"
    assert tables.table("keys list", []) == "ID  NAME  CREATED  EXPIRES\n(none)"
    key = {"id": "k1", "name": "n", "created_at": "2026-12-06T20:45:02.5+01:00"}
    assert tables.table("keys list", [key]).splitlines()[1] == "k1  n     2026-12-06 19:45:02  -"
    assert tables.table("whoami", {"username": "ada", "teams": ["t"]}).splitlines() == [
        "FIELD     VALUE",
        "username  ada",
        'teams     ["t"]',
    ]


def test_json_unless_a_terminal_or_output_asks_for_people() -> None:
    listing = parser().parse_args(["models"])
    assert not output.human(listing, terminal=False) and output.human(listing, terminal=True)
    health = parser().parse_args(["health"])
    assert not output.human(health, terminal=True)
    assert output.human(parser().parse_args(["--output", "table", "health"]), terminal=False)
    after = parser().parse_args(["--output", "table", "keys", "list", "--output", "json"])
    assert not output.human(after, terminal=True)
    assert output.human(parser().parse_args(["jobs", "list", "--output", "text"]), False)


def test_chunks_are_read_from_server_sent_events() -> None:
    reader = ChunkReader()
    lines = [
        ": keep-alive",
        'data: {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}',
        "",
        'data: {"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo"},',
        'data:  "finish_reason": "stop"}]}',
        "",
        "data: [DONE]",
        "",
    ]
    chunks = [chunk for chunk in map(reader.feed, lines) if chunk is not None]
    assert [c.content for c in chunks] == ["Hel", "lo"] and chunks[-1].finish_reason == "stop"
    assert reader.done
    failing = ChunkReader()
    failing.feed('data: {"error": {"message": "boom", "type": "server_error"}}')
    with pytest.raises(ModelServeError) as raised:
        failing.feed("")
    assert (raised.value.code, raised.value.message) == ("server_error", "boom")


def test_a_server_that_stays_failed_ends_the_wait(capsys: pytest.CaptureFixture[str]) -> None:
    states = iter(["Pending", "Failed", "Deploying", "Failed", "Failed", "Failed"])

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"server_id": "u1", "name": "s", "namespace": "ns",
                                         "runtime": "llamacpp", "replicas": 1,
                                         "ready_replicas": 0, "status": next(states),
                                         "message": "crashed"})  # fmt: skip

    clock = iter(range(100))
    with Client("http://gateway.test", "tok", transport=httpx.MockTransport(answer)) as client:
        seen: list[tuple[str, float]] = []
        server = serving.wait_until_ready(
            client,
            "u1",
            max_wait=60,
            poll_interval=0,
            failed_for=2,
            on_update=lambda found, elapsed: seen.append((found.status, elapsed)),
            clock=lambda: float(next(clock)),
            sleep=lambda _: None,
        )
    # Failed at 1 s, Deploying again, then Failed at 3, 4 and 5 s: 2 s failed at 5 s.
    assert server.status == "Failed" and [state for state, _ in seen][-1] == "Failed"
    assert len(seen) == 6
    args = parser().parse_args(["serve", "--model-name", "m", "--wait"])
    assert serving.exit_status(args, server, sys.stderr) == serving.SERVER_FAILED
    assert "server u1 Failed: crashed" in capsys.readouterr().err


def test_serve_nodes_and_parallelism_go_into_the_body() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"server_id": "u1", "name": "s", "namespace": "ns",
                                         "runtime": "vllm", "replicas": 1, "ready_replicas": 0,
                                         "nodes": 2, "status": "Pending"})  # fmt: skip

    argv = ["serve", "--model-name", "llama-405b", "--gpus", "8", "--nodes", "2"]
    with Client("http://gateway.test", "tok", transport=httpx.MockTransport(answer)) as client:
        run(client, parser().parse_args(argv))
        run(client, parser().parse_args([*argv, "--tensor", "8", "--pipeline", "2"]))
    bodies = [json.loads(request.content) for request in seen]
    assert bodies == [
        {"model_name": "llama-405b", "gpus": 8, "nodes": 2},
        {"model_name": "llama-405b", "gpus": 8, "nodes": 2,
         "parallelism": {"tensor": 8, "pipeline": 2}},
    ]  # fmt: skip
    assert [request.url.path for request in seen] == ["/serve", "/serve"]


def test_serve_tensor_without_pipeline_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--url", "http://127.0.0.1:1", "--token", "t", "serve", "--model-name", "m"]
    assert main([*argv, "--nodes", "2", "--tensor", "8"]) == 2
    assert "--tensor and --pipeline go together" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        parser().parse_args(["serve", "--model-name", "m", "--nodes", "two"])
    assert raised.value.code == 2


def test_serve_s_help_says_what_nodes_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--nodes NODES spread the model over N nodes (2-16), --gpus on each" in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_state_line_redraws_on_a_terminal_and_logs_changes_elsewhere() -> None:
    fields = {"server_id": "u1", "name": "s", "namespace": "ns", "runtime": "llamacpp",
              "replicas": 1, "ready_replicas": 0}  # fmt: skip
    pending = Server.model_validate({**fields, "status": "Pending", "message": "waiting"})
    ready = Server.model_validate({**fields, "ready_replicas": 1, "status": "Ready"})
    terminal = _Terminal()
    line = serving.StateLine(terminal)
    for server, elapsed in ((pending, 0.0), (pending, 1.0), (ready, 2.0)):
        line(server, elapsed)
    line.close()
    assert terminal.getvalue() == (
        "\r| s: Pending 0/1 ready (0 s): waiting\x1b[K"
        "\r/ s: Pending 0/1 ready (1 s): waiting\x1b[K"
        "\r- s: Ready 1/1 ready (2 s)\x1b[K\n"
    )
    piped = io.StringIO()
    line = serving.StateLine(piped)
    for server, elapsed in ((pending, 0.0), (pending, 1.0), (ready, 2.0)):
        line(server, elapsed)
    line.close()
    assert piped.getvalue() == "s: Pending 0/1 ready (0 s): waiting\ns: Ready 1/1 ready (2 s)\n"


def test_a_server_answer_says_how_many_nodes_each_replica_spans() -> None:
    fields = {"server_id": "u1", "name": "s", "namespace": "ns", "runtime": "vllm",
              "replicas": 1, "ready_replicas": 0, "status": "Pending"}  # fmt: skip
    assert Server.model_validate({**fields, "nodes": 2}).nodes == 2
    assert Server.model_validate({**fields, "nodes": None}).nodes is None
    assert Server.model_validate(fields).nodes is None
