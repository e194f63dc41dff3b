"""The web UI in a real browser (Debian's Chromium, driven by Playwright) against `make
dev`'s platform: the gateway serving the UI's build (web/dist, made by `make ui`, which
`make test` runs first) and every real service behind it.

Screenshots of the pages are taken into the test's folder; with
MODELSERVE_UPDATE_SCREENSHOTS=1 they are copied to docs/ui/, where docs/ui.md shows them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from modelserve.testbed.ui_session import SERVED, SESSION, new_user, shoot, sign_in

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]

# The elements that reach past the window's right edge (tag, class, right edge): what
# to look at when the window scrolls sideways.
WIDER_THAN_THE_WINDOW = """() => [...document.querySelectorAll('body *')]
    .map((e) => [e.tagName, e.className, Math.round(e.getBoundingClientRect().right)])
    .filter(([, , right]) => right > window.innerWidth + 1).slice(0, 10)"""


def test_sign_in_the_servers_page_api_keys_and_sign_out(
    page: Page, platform: dict[str, str], tmp_path: Path
) -> None:
    page.goto(f"{platform['GATEWAY_URL']}/ui/")
    shoot(page, "sign-in", tmp_path)
    sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])

    # Servers: make dev's SmolLM2 server, Ready, with its replicas.
    expect(page.get_by_role("link", name="Servers")).to_have_attribute("aria-current", "page")
    row = page.get_by_role("row").filter(has_text=SERVED).first
    expect(row).to_be_visible(timeout=30_000)
    expect(row).to_contain_text("Ready")
    expect(row).to_contain_text("1 / 1 ready")
    shoot(page, "servers", tmp_path)

    # API keys: create one (its secret shown once), see it listed, revoke it.
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("ui-test-key")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_label("New key")).to_contain_text("msk_")
    key_row = page.get_by_role("row").filter(has_text="ui-test-key")
    expect(key_row).to_have_count(1)
    shoot(page, "api-keys", tmp_path)
    page.once("dialog", lambda dialog: dialog.accept())
    key_row.get_by_role("button", name="Revoke ui-test-key").click()
    expect(page.get_by_role("row").filter(has_text="ui-test-key")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{SESSION}')") is None


def test_a_wrong_password_is_said_in_words(page: Page, platform: dict[str, str]) -> None:
    sign_in(page, platform, "admin", "not-the-password")
    expect(page.get_by_role("alert")).to_contain_text("wrong username or password")


def test_an_expired_session_asks_to_sign_in_again(page: Page, platform: dict[str, str]) -> None:
    sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.evaluate(
        f"""() => {{
            const session = JSON.parse(sessionStorage.getItem('{SESSION}'));
            session.expiresAt = Date.now() - 1000;
            sessionStorage.setItem('{SESSION}', JSON.stringify(session));
        }}"""
    )
    page.reload()
    expect(page.get_by_role("status")).to_contain_text("Your session expired")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{SESSION}')") is None


def test_a_token_the_platform_refuses_ends_the_session(
    page: Page, platform: dict[str, str]
) -> None:
    sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.evaluate(
        f"""() => {{
            const session = JSON.parse(sessionStorage.getItem('{SESSION}'));
            session.token = 'not-a-token';
            sessionStorage.setItem('{SESSION}', JSON.stringify(session));
        }}"""
    )
    page.reload()  # its first call answers 401
    expect(page.get_by_role("status")).to_contain_text("Your session has ended")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_a_user_sees_only_their_own_servers(page: Page, platform: dict[str, str]) -> None:
    password = new_user(platform, "ui-bob")
    sign_in(page, platform, "ui-bob", password)
    expect(page.get_by_role("cell", name="No servers. Serve a model above.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text=SERVED)).to_have_count(0)


def test_the_keyboard_and_a_narrow_window(browser: Browser, platform: dict[str, str]) -> None:
    context = browser.new_context(viewport={"width": 480, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        # The window does not scroll sideways (a wide table scrolls inside the page).
        wide = page.evaluate(WIDER_THAN_THE_WINDOW)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), wide
        # The first Tab reaches the skip link, which moves to the page.
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to the page")).to_be_focused()
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement && document.activeElement.tagName")
        assert focused in ("A", "BUTTON")
    finally:
        context.close()


PAGES = [
    ("servers", "Servers"),
    ("models", "Models"),
    ("playground", "Playground"),
    ("arena", "Arena"),
    ("jobs", "Jobs"),
    ("usage", "Usage and limits"),
    ("telemetry", "GPUs and system"),
    ("keys", "API keys"),
    ("admin", "Users and teams"),
]


def test_every_page_opens_from_the_navigation_without_an_error(
    page: Page, platform: dict[str, str], tmp_path: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])
    for path, title in PAGES:
        page.get_by_role("navigation", name="Pages").get_by_role("link", name=title).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(title)
        page.wait_for_load_state("networkidle")
        expect(page.get_by_role("alert")).to_have_count(0)
        shoot(page, path, tmp_path)
    assert errors == [], errors


def test_the_playground_streams_an_answer_of_make_dev_s_model(
    page: Page, platform: dict[str, str], tmp_path: Path
) -> None:
    sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])
    page.get_by_role("link", name="Playground").click()
    model = page.get_by_role("combobox", name="Model", exact=True)
    expect(model).to_contain_text(SERVED, timeout=30_000)
    model.select_option(value=SERVED)
    page.get_by_label("Max tokens").fill("8")
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Your message (Ctrl+Enter sends)").fill("Say hello.")
    page.get_by_role("button", name="Send").click()
    conversation = page.get_by_role("region", name="Conversation")
    expect(conversation).to_contain_text("Say hello.")
    answer = conversation.locator(".pg-assistant .pg-text")
    expect(answer).not_to_have_text("", timeout=60_000)
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=60_000)
    expect(page.get_by_role("alert")).to_have_count(0)
    shoot(page, "playground-answer", tmp_path)


def test_an_admin_makes_a_user_who_can_then_sign_in(page: Page, platform: dict[str, str]) -> None:
    sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])
    page.get_by_role("link", name="Users and teams").click()
    page.get_by_label("Username").fill("ui-carol")
    page.get_by_label("Password").fill("ui-carol-password")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("row").filter(has_text="ui-carol").first).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, platform, "ui-carol", "ui-carol-password")
    expect(page.get_by_text("ui-carol", exact=True)).to_be_visible()
    # Not an admin: no Users and teams in the navigation.
    expect(page.get_by_role("link", name="Users and teams")).to_have_count(0)


def test_gpus_and_system_show_the_test_bed_s_nodes(
    page: Page, platform: dict[str, str], tmp_path: Path
) -> None:
    sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])
    page.get_by_role("link", name="GPUs and system").click()
    nodes = page.get_by_role("table", name="GPU nodes")
    expect(nodes).to_contain_text("gpu-a100-0", timeout=30_000)
    expect(nodes).to_contain_text("gpu-l4-0")
    page.get_by_role("navigation", name="Telemetry").get_by_role("link", name="System").click()
    expect(page.get_by_role("heading", name="System", exact=True)).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    shoot(page, "system", tmp_path)
