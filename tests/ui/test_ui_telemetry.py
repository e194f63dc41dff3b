"""GPUs and system in a real browser against `make dev`'s platform: the line charts draw
once the page has polled a few times, for the GPUs (fed by a node agent's reports) and for
the gateway's host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from modelserve.testbed.cache import repo_root
from modelserve.testbed.nodeagent import running_nodeagent
from modelserve.testbed.ui_session import shoot, sign_in_as_admin

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]

# The page polls every 5 s: a line needs two answers, the GPU one two different reports.
CHARTS_MS = 45_000
FAKE_SMI = repo_root() / "tests" / "nodeagent" / "data" / "fake_nvidia_smi.py"
NODE = "gpu-a100-0"


@pytest.fixture
def node_agent(platform: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """`make dev` runs no node agent (no GPU here), so no GPU has live figures: one runs on
    the A100 node for the test, reading the recorded nvidia-smi. It reports with the
    cluster admin's credentials: make dev's cluster is only known here by its kubeconfig,
    and the agent's own account is tested in tests/nodeagent."""
    with running_nodeagent(platform["KUBECONFIG"], NODE, FAKE_SMI, tmp_path, tmp_path):
        yield


def line_of(page: Page, title: str) -> None:
    """The chart whose title starts with `title` draws a line (a polyline of two points or
    more)."""
    chart = page.get_by_role("img", name=re.compile(f"^{re.escape(title)}.*, latest: "))
    expect(chart).to_be_visible(timeout=CHARTS_MS)
    expect(chart.locator("polyline").first).to_be_attached(timeout=CHARTS_MS)
    points = chart.locator("polyline").first.get_attribute("points") or ""
    assert len(points.split()) >= 2, points


def test_the_gpu_and_host_charts_draw(
    page: Page, platform: dict[str, str], node_agent: None, tmp_path: Path
) -> None:
    sign_in_as_admin(page, platform)
    page.get_by_role("link", name="GPUs and system").click()
    expect(page.get_by_role("table", name="GPU nodes")).to_contain_text(NODE, timeout=30_000)

    expect(page.get_by_role("heading", name="GPU history")).to_be_visible(timeout=CHARTS_MS)
    line_of(page, "GPU utilisation")
    line_of(page, "GPU memory used")
    # One series per GPU of the node agent's node, named in the chart's summary.
    utilisation = page.get_by_role("img", name=re.compile("^GPU utilisation, latest: "))
    expect(utilisation).to_have_attribute("aria-label", re.compile(f"{NODE} GPU 0 \\d+ %"))
    expect(page.get_by_role("alert")).to_have_count(0)
    page.get_by_role("heading", name="GPU history").scroll_into_view_if_needed()
    shoot(page, "telemetry-charts", tmp_path)

    # The host's charts, on the System view (the page keeps what it polled).
    page.get_by_role("navigation", name="Telemetry").get_by_role("link", name="System").click()
    expect(page.get_by_role("heading", name="Host history")).to_be_visible()
    line_of(page, "Host CPU load, 1-minute average")
    line_of(page, "Host memory used")
    expect(page.get_by_role("alert")).to_have_count(0)
