"""`make frontend`: Vite's dev server, which serves the UI's sources with hot reload and
passes the API's paths on to `make dev`'s gateway (MODELSERVE_GATEWAY_URL)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import free_port
from modelserve.testbed.ui_session import admin_token

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def frontend(platform: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "frontend.log").open("w")
    env = {**os.environ, "MODELSERVE_GATEWAY_URL": platform["GATEWAY_URL"]}
    process = subprocess.Popen(
        ["make", "--no-print-directory", "frontend", f"FRONTEND_PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: make, npm and vite end together
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, (tmp_path / "frontend.log").read_text()
        try:
            return httpx.get(f"{url}/ui/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=60, what="make frontend's dev server")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        log.close()


def test_make_frontend_serves_the_sources_and_passes_the_api_to_the_gateway(
    frontend: str, platform: dict[str, str]
) -> None:
    page = httpx.get(f"{frontend}/ui/", timeout=10)
    # The dev server's page: the sources themselves, with Vite's hot-reload client.
    assert "/ui/@vite/client" in page.text and "/ui/src/main.tsx" in page.text
    source = httpx.get(f"{frontend}/ui/src/main.tsx", timeout=30)
    assert source.status_code == 200 and "createRoot" in source.text

    # An API path reaches make dev's gateway, with the caller's token.
    headers = {"Authorization": f"Bearer {admin_token(platform)}"}
    me = httpx.get(f"{frontend}/auth/me", headers=headers, timeout=10)
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "admin"
    refused = httpx.get(f"{frontend}/auth/me", timeout=10)
    assert refused.status_code == 401
