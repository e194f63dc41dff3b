"""The Servers page's whole flow in a real browser against `make dev`'s platform: an admin
serves a model through the page, sees it in the list with its phase and loading state,
opens its detail (#/servers/<id>) with its conditions and events, scales it, and stops
it. The server is a vLLM one on a simulated (KWOK) GPU node, whose pods KWOK marks
Running and Ready: the operator, the contract's webhook and the gateway are the real ones.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from modelserve.testbed.ui_session import admin_token, shoot, sign_in

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]

WIDER_THAN_THE_WINDOW = "document.documentElement.scrollWidth <= window.innerWidth"


def model_name(env: dict[str, str]) -> str:
    """The name of make dev's model record (SmolLM2), which the form serves by name."""
    headers = {"Authorization": f"Bearer {admin_token(env)}"}
    with httpx.Client(base_url=env["GATEWAY_URL"], headers=headers, timeout=30) as http:
        records = http.get("/models").json()
    names = sorted({r["name"] for r in records if r["id"] == env["SMOLLM2_MODEL_UUID"]})
    names = names or sorted({r["name"] for r in records if "smollm2" in r["name"].lower()})
    assert names, f"make dev's download service has no SmolLM2 record: {records}"
    return str(names[0])


def test_serve_see_detail_scale_and_stop_a_server(
    page: Page, platform: dict[str, str], tmp_path: Path
) -> None:
    served = f"ui-servers-{uuid.uuid4().hex[:6]}"
    sign_in(page, platform, "admin", platform["GATEWAY_ADMIN_PASSWORD"])

    # Serve it through the page's form.
    form = page.get_by_role("form", name="Serve a model")
    form.get_by_label("Model", exact=True).fill(model_name(platform))
    form.get_by_label("Runtime").select_option(label="vLLM")
    form.get_by_label("GPUs per replica").fill("1")
    form.get_by_label("Served name").fill(served)
    form.get_by_role("button", name="Serve").click()

    # In the list, live: its phase, then Ready and loaded with its one replica.
    row = page.get_by_role("row").filter(has_text=served)
    expect(row).to_have_count(1, timeout=15_000)
    expect(row).to_contain_text(re.compile("Pending|Deploying|Ready"))
    expect(row).to_contain_text("Ready", timeout=90_000)
    expect(row).to_contain_text("1 / 1 ready", timeout=30_000)
    expect(row).to_contain_text("loaded", timeout=30_000)

    # Its detail, at an address of its own that a reload keeps.
    row.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(r"#/servers/[0-9a-f-]{36}$"))
    page.reload()
    fields = page.locator(".sv-fields")
    expect(fields).to_contain_text(served)
    expect(fields).to_contain_text("Ready")
    expect(fields).to_contain_text("loaded")
    expect(fields).to_contain_text("1 / 1 ready")
    conditions = page.get_by_role("region", name="Conditions")
    expect(conditions.get_by_role("row").filter(has_text="Ready").first).to_contain_text("True")
    events = page.get_by_role("region", name="Events")
    expect(events.get_by_role("row").filter(has_text="ModelServe/").first).to_be_visible(
        timeout=30_000
    )
    expect(events.get_by_role("row").filter(has_text="Pod/").first).to_be_visible(timeout=30_000)
    shoot(page, "server-detail", tmp_path)

    # Nothing sticks out of a narrow window.
    page.set_viewport_size({"width": 480, "height": 800})
    assert page.evaluate(WIDER_THAN_THE_WINDOW)
    page.set_viewport_size({"width": 1280, "height": 800})

    # Scale: a count out of bounds is said in words; 2 is asked for, and shown.
    replicas = page.get_by_role("spinbutton", name="Replicas")
    expect(replicas).to_have_value("1")
    replicas.fill("101")
    page.get_by_role("button", name="Scale").click()
    expect(page.get_by_role("alert")).to_contain_text("Replicas go from 0 to 100.")
    replicas.fill("2")
    page.get_by_role("button", name="Scale").click()
    expect(page.get_by_role("status").filter(has_text="Asked for 2 replicas.")).to_be_visible()
    expect(fields).to_contain_text("2 / 2 ready", timeout=90_000)
    expect(events.get_by_role("row").filter(has_text="ScalingReplicaSet").first).to_be_visible(
        timeout=30_000
    )

    # Stop it, after the confirmation: back at the list, where it is gone.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=re.compile("^Stop ")).click()
    expect(page).to_have_url(re.compile(r"#/servers$"))
    expect(page.get_by_role("row").filter(has_text=served)).to_have_count(0, timeout=60_000)
