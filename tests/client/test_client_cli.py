"""The `modelserve` CLI: each command is the client's method, its answer JSON on stdout;
a refusal is the error's JSON on stderr and exit status 1."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from modelserve.client import Client
from modelserve.client.cli import main, parser, run


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
