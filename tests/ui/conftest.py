"""The browser and `make dev`'s platform, shared by the web UI's tests (one module per
page or flow; helpers in modelserve.testbed.ui_session)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from modelserve.testbed.browser import ensure_chromium
from modelserve.testbed.doc_scripts import DevPlatform


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module: Playwright's sync API keeps an event loop running in this thread while
    it is open, so a test of another folder that runs after it on the same worker
    (`make test` runs modules on two workers, in no fixed order) could not call
    `asyncio.run`. Closed at the end of the module, it leaves none."""
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable))
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def platform(dev: DevPlatform) -> dict[str, str]:
    """make dev's variables (GATEWAY_URL, GATEWAY_ADMIN_PASSWORD), its UI checked served."""
    env = dev.env()
    answer = httpx.get(f"{env['GATEWAY_URL']}/ui/", timeout=10)
    assert answer.status_code == 200, f"the gateway serves no UI (make ui first): {answer.text}"
    return env


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    yield opened
    context.close()
