"""The Models page's whole flow in a real browser against `make dev`'s platform: a download
of SmolLM2 from the upstream store (which holds it under its model UUID) started from the
page and followed to ready, its record among the versions, a second version registered by
that record's URI, set active with a reason, the active mark moving, and the roll back
moving it back."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from modelserve.testbed.ui_session import shoot, sign_in

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]

DOWNLOADS = "Downloads and registrations, newest first"
RECORDS = "Model records, by name then age"


def table(page: Page, caption: str) -> Locator:
    return page.get_by_role("table", name=caption)


def states_until_ready(row: Locator, model_id: str, timeout: float = 180) -> list[str]:
    """The states the row shows, refreshed by the page itself, until it says ready."""
    seen: list[str] = []
    status = row.locator(".job-status")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = status.inner_text()
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in ("ready", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert seen[-1] == "ready", f"the download of {model_id} went {seen}: {row.inner_text()}"
    return seen


def set_active_from(button: Locator, page: Page, reason: str) -> None:
    """Click a button that asks for a reason (window.prompt) and give it."""
    page.once("dialog", lambda dialog: dialog.accept(reason))
    button.click()


def test_download_register_set_active_and_roll_back(
    page: Page, platform: dict[str, str], tmp_path: Path
) -> None:
    sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_role("link", name="Models").click()
    name = f"ui-smol-{uuid.uuid4().hex[:6]}"
    downloaded, registered = f"{name}-dl", f"{name}-v2"

    # Download SmolLM2's upstream folder under a record id of its own: a new copy.
    form = page.get_by_role("form", name="Download a model")
    form.get_by_label("Source").select_option("folder")
    form.get_by_label("Upstream model id (folder)").fill(platform["SMOLLM2_MODEL_UUID"])
    form.get_by_label("Record id").fill(downloaded)
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_role("button", name="Download").click()
    expect(
        page.get_by_role("status").filter(has_text=f"The download of {downloaded}")
    ).to_contain_text("queued")
    row = table(page, DOWNLOADS).get_by_role("row").filter(has_text=downloaded)
    expect(row).to_have_count(1)
    progress = row.get_by_role("progressbar", name=f"Progress of {downloaded}")
    expect(progress).to_be_visible()
    states_until_ready(row, downloaded)
    expect(progress).to_have_attribute("value", "1")
    expect(row).to_contain_text("MiB of")
    expect(row).to_contain_text("2 / 2 files")
    expect(row.get_by_role("button", name=f"Cancel {downloaded}")).to_have_count(0)

    # Its record appears among the versions (the page reloads them when it is ready).
    record = table(page, RECORDS).get_by_role("row").filter(has_text=downloaded)
    expect(record).to_have_count(1, timeout=15_000)
    expect(record).to_contain_text("download")
    uri = record.locator(".uri").inner_text()
    assert uri.startswith("s3://") and uri.endswith(".gguf"), uri

    # Register a second version of the same name from that URI, followed to ready.
    register = page.get_by_role("form", name="Register a version")
    register.get_by_label("Version id").fill(registered)
    register.get_by_label("Model name").fill(name)
    register.get_by_label("Source label").fill("ui-test")
    register.get_by_label("Tags (comma-separated)").fill("ui,step2")
    register.get_by_label("Checkpoint URI").fill(uri)
    register.get_by_role("button", name="Register").click()
    watch = page.get_by_role("status").filter(has_text=f"Registration of {registered}")
    expect(watch).to_contain_text("ready", timeout=120_000)
    second = table(page, RECORDS).get_by_role("row").filter(has_text=registered)
    expect(second).to_have_count(1, timeout=15_000)
    expect(second).to_contain_text("register")
    expect(second).to_contain_text("ui, step2")
    # The registration is a job of the same engine: the downloads list shows it too.
    job = table(page, DOWNLOADS).get_by_role("row").filter(has_text=registered)
    expect(job).to_contain_text("register")
    expect(job.locator(".job-status")).to_have_text("ready")

    # Set the download active, then the registered version: the mark moves with it.
    active = (
        page.get_by_role("table", name="Active versions").get_by_role("row").filter(has_text=name)
    )
    set_active_from(record.get_by_role("button", name=f"Set active {downloaded}"), page, "first")
    expect(active).to_contain_text(downloaded)
    expect(record.locator(".badge")).to_be_visible()
    set_active_from(second.get_by_role("button", name=f"Set active {registered}"), page, "newer")
    expect(active).to_contain_text(registered)
    expect(second.locator(".badge")).to_be_visible()
    expect(record.locator(".badge")).to_have_count(0)
    expect(record.get_by_role("button", name=f"Set active {downloaded}")).to_be_visible()

    # Roll back: the version before the last change is active again.
    set_active_from(active.get_by_role("button", name=f"Roll back {name}"), page, "ui rollback")
    expect(active).to_contain_text(downloaded)
    expect(active).not_to_contain_text(registered)
    expect(record.locator(".badge")).to_be_visible()
    expect(second.locator(".badge")).to_have_count(0)
    expect(second.get_by_role("button", name=f"Set active {registered}")).to_be_visible()
    history = page.get_by_role("table", name="Changes, newest first")
    expect(history.get_by_role("row").filter(has_text="ui rollback")).to_have_count(1)
    expect(page.get_by_role("alert")).to_have_count(0)
    shoot(page, "models", tmp_path)

    # A narrow window: the page does not scroll sideways.
    page.set_viewport_size({"width": 480, "height": 800})
    wider = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wider <= 0, f"the page is {wider} px wider than a 480 px window"
    page.screenshot(path=str(tmp_path / "models-480.png"), full_page=True)
