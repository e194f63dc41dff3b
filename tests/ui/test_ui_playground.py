"""The playground in a real browser against `make dev`'s platform: an answer streamed with
its tokens' logprobs (a token hovered shows its logprob and alternatives in the panel),
and a scaled answer (budget 2, best-of-n) with its trace."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from modelserve.testbed.ui_session import SERVED, shoot, sign_in_as_admin

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]

ANSWER_MS = 60_000  # SmolLM2-135M on the machine's CPUs


def open_playground(page: Page, platform: dict[str, str]) -> None:
    sign_in_as_admin(page, platform)
    page.get_by_role("link", name="Playground").click()
    model = page.get_by_role("combobox", name="Model", exact=True)
    expect(model).to_contain_text(SERVED, timeout=30_000)
    model.select_option(value=SERVED)
    page.get_by_label("Temperature").fill("0")


def send(page: Page, message: str) -> None:
    page.get_by_label("Your message (Ctrl+Enter sends)").fill(message)
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=ANSWER_MS)
    expect(page.get_by_role("alert")).to_have_count(0)


def test_an_answer_s_tokens_show_their_logprobs_on_hover(
    page: Page, platform: dict[str, str], tmp_path: Path
) -> None:
    open_playground(page, platform)
    page.get_by_label("Max tokens").fill("8")
    page.get_by_role("checkbox", name="Token logprobs").check()
    send(page, "Say hello.")

    tokens = page.get_by_role("region", name="Conversation").get_by_role(
        "group", name="The answer's tokens (arrow keys move between them)"
    )
    spans = tokens.locator("span")
    expect(spans.first).to_be_visible()
    assert 1 <= spans.count() <= 8
    first = spans.first
    # The panel is what describes each token (aria-describedby).
    panel = page.locator(f"[id='{first.get_attribute('aria-describedby')}']")
    expect(panel).to_contain_text("Hover over a token")

    first.hover()
    # The panel describes the token hovered: its text, logprob, probability, and the other
    # tokens of its top 5; its title says the same.
    expect(panel).to_contain_text("logprob")
    expect(panel).to_contain_text("Alternatives:")
    assert first.get_attribute("title") == panel.inner_text()
    shoot(page, "playground-logprobs", tmp_path)

    # Another token, reached with the keyboard, is described in turn.
    if spans.count() > 1:
        first.focus()
        page.keyboard.press("ArrowRight")
        expect(spans.nth(1)).to_be_focused()
        expect(panel).to_have_text(spans.nth(1).get_attribute("title") or "")


def test_a_scaled_answer_shows_its_trace(
    page: Page, platform: dict[str, str], tmp_path: Path
) -> None:
    open_playground(page, platform)
    page.get_by_label("Max tokens").fill("8")
    page.get_by_label("Scaling budget").fill("2")
    page.get_by_label("Scaling algorithm").select_option("best-of-n")
    # Logprobs are off while the budget is over 1, with the reason given.
    expect(page.get_by_role("checkbox", name="Token logprobs")).to_be_disabled()
    expect(page.get_by_text("Logprobs are off while the budget is over 1")).to_be_visible()
    send(page, "What is 2 + 3? Answer with the number only.")

    answer = page.get_by_role("region", name="Conversation").locator(".pg-assistant")
    expect(answer.locator(".pg-text")).not_to_have_text("")
    trace = answer.locator("details.pg-trace")
    summary = trace.locator("summary")
    expect(summary).to_contain_text("Scaling: best-of-n, budget 2")
    expect(summary).to_contain_text("of 2 chosen")
    summary.click()
    candidates = trace.get_by_role("table", name="Candidates")
    expect(candidates).to_be_visible()
    rows = candidates.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(candidates.get_by_text("(chosen)")).to_have_count(1)
    expect(trace).to_contain_text("Reward: logprob")
    # Each candidate has a score: the mean logprob of its tokens.
    for row in range(2):
        score = rows.nth(row).locator("td").first.inner_text()
        assert score != "—" and float(score) <= 0, score
    shoot(page, "playground-trace", tmp_path)
