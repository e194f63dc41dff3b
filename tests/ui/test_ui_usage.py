"""The Usage and limits page in a real browser against `make dev`'s platform: an admin's
chat requests (made through the API first) show in today's totals, the per-model table
and the chart of requests per day; a user sees only their own usage, a member also their
team's; the page fits a 480 px wide window."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from modelserve.testbed.polling import wait_for
from modelserve.testbed.ui_session import SERVED, admin_token, new_user, shoot, sign_in

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]

# How long the page may take to read the usage and limits (the machine's CPUs are shared
# with make dev's model server).
LOADED_MS = 20_000
# The elements that reach past the window's right edge (tag, class, right edge).
WIDER_THAN_THE_WINDOW = """() => [...document.querySelectorAll('body *')]
    .map((e) => [e.tagName, e.className, Math.round(e.getBoundingClientRect().right)])
    .filter(([, , right]) => right > window.innerWidth + 1).slice(0, 10)"""


def today_usage(http: httpx.Client) -> dict[str, Any]:
    answer = http.get("/usage", params={"period": "day"})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def chat(http: httpx.Client) -> None:
    body = {"model": SERVED, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    answer = http.post("/v1/chat/completions", json=body, timeout=120)
    assert answer.status_code == 200, answer.text


@pytest.fixture
def admin_requests(platform: dict[str, str]) -> int:
    """Two chat requests of the admin, recorded by the contract service (the gateway's
    usage outbox sends them within seconds): the admin's requests today, at least 2."""
    headers = {"Authorization": f"Bearer {admin_token(platform)}"}
    with httpx.Client(base_url=platform["GATEWAY_URL"], headers=headers, timeout=30) as http:
        before: int = today_usage(http)["requests"]
        chat(http)
        chat(http)

        def counted() -> int | None:
            requests: int = today_usage(http)["requests"]
            return requests if requests >= before + 2 else None

        return wait_for(counted, timeout=60, what="the admin's two requests in today's usage")


def open_usage(page: Page) -> None:
    page.get_by_role("navigation", name="Pages").get_by_role(
        "link", name="Usage and limits"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Usage and limits")
    expect(page.get_by_role("heading", name="Today and this month")).to_be_visible(
        timeout=LOADED_MS
    )


def requests_today(page: Page) -> int:
    today = page.get_by_role("region", name=re.compile(r"^Today \("))
    figure = today.locator("dt", has_text="Requests").locator("xpath=following-sibling::dd[1]")
    return int(figure.inner_text().replace(",", "").replace("\u202f", "").replace(" ", ""))


def test_an_admin_sees_their_requests_and_the_chart(
    page: Page, platform: dict[str, str], admin_requests: int, tmp_path: Path
) -> None:
    sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])
    open_usage(page)
    expect(page.get_by_text("Showing: You (admin)")).to_be_visible()
    assert requests_today(page) >= admin_requests
    # The model make dev serves, in the per-model table.
    expect(page.get_by_role("row").filter(has_text=SERVED).first).to_be_visible()
    # The limits of the admin's contract (or "no limit"), as a table.
    expect(page.get_by_role("table", name="Your limits")).to_be_visible(timeout=LOADED_MS)
    expect(page.get_by_role("rowheader", name="Requests per minute")).to_be_visible()
    # The charts: one image each, whose label gives today's figure.
    chart = page.get_by_role("img", name="Requests per day", exact=False)
    expect(chart).to_be_visible()
    label = chart.get_attribute("aria-label") or ""
    assert "latest: Requests" in label, label
    assert int(label.rpartition(" ")[2].replace(",", "")) >= admin_requests, label
    expect(page.get_by_role("img", name="Tokens per day", exact=False)).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    shoot(page, "usage", tmp_path)

    # An admin reads another user's usage by name, against that user's limits.
    page.get_by_label("Whose usage").select_option("user")
    page.get_by_label("User name").fill("nobody-used-this")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text("Showing: User nobody-used-this")).to_be_visible()
    expect(page.get_by_text("No model was used this month.")).to_be_visible(timeout=LOADED_MS)
    assert requests_today(page) == 0
    expect(page.get_by_role("table", name="User nobody-used-this's limits")).to_be_visible(
        timeout=LOADED_MS
    )
    expect(page.get_by_role("alert")).to_have_count(0)


def test_a_user_sees_only_their_own_usage(
    page: Page, platform: dict[str, str], admin_requests: int
) -> None:
    password = new_user(platform, "ui-usage-carol")
    sign_in(page, platform, "ui-usage-carol", password)
    open_usage(page)
    expect(page.get_by_text("Showing: You (ui-usage-carol)")).to_be_visible()
    assert requests_today(page) == 0  # not the admin's requests
    expect(page.get_by_role("row").filter(has_text=SERVED)).to_have_count(0)
    # No way to name someone else: no admin form, no teams to pick.
    expect(page.get_by_label("User name")).to_have_count(0)
    expect(page.get_by_label("Whose usage")).to_have_count(0)
    expect(page.get_by_role("img", name="Requests per day", exact=False)).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)


def test_a_member_picks_one_of_their_teams(page: Page, platform: dict[str, str]) -> None:
    user, team = "ui-usage-dave", "ui-usage-team"
    password = new_user(platform, user)
    headers = {"Authorization": f"Bearer {admin_token(platform)}"}
    with httpx.Client(base_url=platform["GATEWAY_URL"], headers=headers, timeout=30) as http:
        made = http.post("/teams", json={"name": team})
        assert made.status_code in (201, 409), made.text
        joined = http.put(f"/teams/{team}/members/{user}")
        assert joined.status_code == 200, joined.text
    sign_in(page, platform, user, password)
    open_usage(page)
    page.get_by_label("Whose usage").select_option(label=f"Team {team}")
    expect(page.get_by_text(f"Showing: Team {team}")).to_be_visible()
    expect(page.get_by_text(f"Team {team} has no contract of its own")).to_be_visible(
        timeout=LOADED_MS
    )
    expect(page.get_by_role("img", name="Requests per day", exact=False)).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)


def test_the_page_fits_a_narrow_window(
    browser: Browser, platform: dict[str, str], admin_requests: int
) -> None:
    context = browser.new_context(viewport={"width": 480, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])
        open_usage(page)
        expect(page.get_by_role("img", name="Requests per day", exact=False)).to_be_visible()
        wide = page.evaluate(WIDER_THAN_THE_WINDOW)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), wide
    finally:
        context.close()
