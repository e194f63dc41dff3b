"""The gateway serves the web UI's build under /ui (GATEWAY_UI_DIR), with the UI's
security headers, and says so in words where it has none. The app is built by its
factory without its lifespan (static files need no database)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from modelserve.common.tokens import TokenSettings
from modelserve.gateway.app import create_app
from modelserve.gateway.settings import GatewaySettings

TOKENS = TokenSettings(secret=SecretStr("ui-tests-secret-of-at-least-32-bytes-long"))


def _client(ui_dir: Path | None) -> TestClient:
    return TestClient(create_app(GatewaySettings(tokens=TOKENS, ui_dir=ui_dir)))


def test_the_build_is_served_under_ui_with_its_security_headers(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>ModelServe</title>")
    (tmp_path / "assets" / "index-abc.js").write_text("console.log(1)")
    client = _client(tmp_path)

    moved = client.get("/ui", follow_redirects=False)
    assert moved.status_code == 307 and moved.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and "<title>ModelServe</title>" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache"
    script = client.get("/ui/assets/index-abc.js")
    assert script.status_code == 200 and "immutable" in script.headers["cache-control"]
    assert client.get("/ui/../pyproject.toml").status_code == 404
    assert client.get("/ui/missing.js").status_code == 404


def test_without_a_build_ui_says_what_to_do(tmp_path: Path) -> None:
    for folder in (None, tmp_path):  # unset, or a folder without index.html
        answer = _client(folder).get("/ui/")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "ui_not_installed"
        assert "GATEWAY_UI_DIR" in answer.json()["error"]["message"]
