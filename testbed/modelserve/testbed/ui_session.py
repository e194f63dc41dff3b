"""What the web UI's browser tests (tests/ui/) share: signing in through the page, the
platform's accounts made through the API, and screenshots that docs/ui.md shows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
from playwright.sync_api import Page

from modelserve.testbed.cache import repo_root

SERVED = "smollm2-135m-instruct"  # what make dev serves, as its admin
SESSION = "modelserve.session"  # the UI's sessionStorage key


def screenshots() -> Path:
    return repo_root() / "docs" / "ui"


def sign_in(page: Page, env: dict[str, str], username: str, password: str) -> None:
    page.goto(f"{env['GATEWAY_URL']}/ui/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def sign_in_as_admin(page: Page, env: dict[str, str]) -> None:
    sign_in(page, env, "admin", env["GATEWAY_ADMIN_PASSWORD"])


def shoot(page: Page, name: str, folder: Path) -> None:
    """A full-page screenshot into `folder`; copied to docs/ui/ with
    MODELSERVE_UPDATE_SCREENSHOTS=1."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("MODELSERVE_UPDATE_SCREENSHOTS") == "1":
        screenshots().mkdir(exist_ok=True)
        shutil.copy(path, screenshots() / path.name)


def admin_token(env: dict[str, str]) -> str:
    with httpx.Client(base_url=env["GATEWAY_URL"], timeout=30) as http:
        signed = http.post(
            "/auth/token",
            json={"username": "admin", "password": env["GATEWAY_ADMIN_PASSWORD"]},
        )
        signed.raise_for_status()
        return str(signed.json()["access_token"])


def new_user(env: dict[str, str], name: str) -> str:
    """An account of the platform (made by its admin through the API): its password."""
    password = f"{name}-password-for-ui-tests"
    headers = {"Authorization": f"Bearer {admin_token(env)}"}
    with httpx.Client(base_url=env["GATEWAY_URL"], timeout=30, headers=headers) as http:
        made = http.post("/users", json={"username": name, "password": password})
        assert made.status_code in (201, 409), made.text
    return password
