"""The arena in a real browser against `make dev`'s platform: a battle, both anonymous
answers streamed side by side, the vote that reveals both models, and the global
leaderboard with its intervals.

`make dev`'s two served names (SmolLM2 on llama.cpp, the external llama-cpp-python server)
are its admin's own servers: a battle between them feeds no leaderboard (docs/arena.md:
the global board takes battles between the platform's models). So the cluster's admin
serves SmolLM2 twice more in the platform namespace, and a user with no servers of their
own battles: the two drawn are those, and the vote counts on the global board.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from modelserve.common.modelserve import GROUP, KIND, OWNER_LABEL, VERSION
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import SMOLLM2_MODEL_UUID
from modelserve.testbed.ui_session import SERVED, new_user, shoot, sign_in

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]

ANSWER_MS = 60_000  # two answers of SmolLM2-135M on the machine's CPUs
PLATFORM_NAMESPACE = "modelserve"  # the gateway's and contract's platform namespace
MODELS = ("ui-arena-smollm2-a", "ui-arena-smollm2-b")
DASH = "\u2013"  # between an interval's ends, as the page writes it
INTERVAL = re.compile(rf"^-?\d+\.\d{DASH}-?\d+\.\d$")
VOTER = "ui-arena-voter"


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    ran = subprocess.run(
        [env["KUBECTL"], *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        # HOME: kubectl keeps its discovery cache there (else in the working directory).
        env={"KUBECONFIG": env["KUBECONFIG"], "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


def platform_server(name: str, uri: str) -> dict[str, Any]:
    """SmolLM2 on llama.cpp as `name`, a server of the platform's (one small slot)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": PLATFORM_NAMESPACE,
            "labels": {OWNER_LABEL: "admin"},
        },
        "spec": {
            "runtime": "llamacpp",
            "model": {
                "modelId": SMOLLM2_MODEL_UUID,
                "uri": uri,
                "format": "gguf",
                "servedName": name,
            },
            "args": ["--ctx-size", "1024", "--threads", "1", "--parallel", "1"],
        },
    }


@pytest.fixture(scope="module")
def voter(platform: dict[str, str]) -> Iterator[str]:
    """A user with no servers of their own (their password), for whom two platform servers
    of SmolLM2 are loaded: applied as the cluster's admin (only platform admins serve in a
    platform namespace), deleted afterwards."""
    found = json.loads(kubectl(platform, "get", "ms", "-A", "-o", "json"))
    uri = next(
        item["spec"]["model"]["uri"]
        for item in found["items"]
        if item["spec"]["model"].get("servedName") == SERVED
    )
    password = new_user(platform, VOTER)
    for name in MODELS:
        kubectl(platform, "apply", "-f", "-", stdin=json.dumps(platform_server(name, uri)))
    try:
        with httpx.Client(base_url=platform["GATEWAY_URL"], timeout=30) as http:
            signed = http.post("/auth/token", json={"username": VOTER, "password": password})
            http.headers["Authorization"] = f"Bearer {signed.json()['access_token']}"

            def loaded() -> bool:
                models = {m["id"]: m.get("state") for m in http.get("/v1/models").json()["data"]}
                return all(models.get(name) == "loaded" for name in MODELS)

            wait_for(loaded, timeout=180, what="the arena's platform servers to load")
        yield password
    finally:
        kubectl(platform, "delete", "ms", "-n", PLATFORM_NAMESPACE, *MODELS, "--wait=false")


def battle(page: Page, prompt: str) -> None:
    """A new battle, answered greedily and briefly: a sampled answer that named its model
    would leave the vote uncounted."""
    page.get_by_label("Your prompt").fill(prompt)
    page.get_by_label("Max tokens").fill("16")
    page.get_by_label("Temperature").fill("0")
    page.get_by_role("button", name="Start a battle").click()
    for side in ("Model A", "Model B"):
        answer = page.get_by_role("region", name=side, exact=True).locator(".arena-answer")
        expect(answer).not_to_have_text("", timeout=ANSWER_MS)
    expect(page.get_by_role("button", name="A is better")).to_be_visible(timeout=ANSWER_MS)
    expect(page.get_by_role("alert")).to_have_count(0)


def vote(page: Page, choice: str, outcome: str) -> dict[str, str]:
    """Vote; the models revealed, by side."""
    page.get_by_role("button", name=choice).click()
    result = page.get_by_role("status").filter(has_text="You voted")
    expect(result).to_contain_text(f"You voted {outcome}.")
    # The voter is in no team: the global board is the only one.
    expect(result).to_contain_text("Your vote counts on the global leaderboard.")
    revealed = {}
    for side in ("a", "b"):
        heading = page.get_by_role("region", name=f"Model {side.upper()}", exact=True).locator("h3")
        expect(heading).to_contain_text(": ")
        revealed[side] = heading.inner_text().split(": ", 1)[1]
        expect(result).to_contain_text(f"Model {side.upper()} was {revealed[side]}")
    assert set(revealed.values()) == set(MODELS), revealed
    return revealed


def test_a_battle_its_vote_and_the_leaderboard(
    page: Page, platform: dict[str, str], voter: str, tmp_path: Path
) -> None:
    sign_in(page, platform, VOTER, voter)
    page.get_by_role("link", name="Arena").click()
    board = page.get_by_role("table", name="Global leaderboard")
    expect(board).to_be_visible(timeout=30_000)

    battle(page, "What is 2 + 3? Answer with the number only.")
    # Side by side, each under its anonymous label, before the vote.
    for side in ("Model A", "Model B"):
        region = page.get_by_role("region", name=side, exact=True)
        expect(region.locator("h3")).to_have_text(side)
        expect(region).to_contain_text("What is 2 + 3?")
    shoot(page, "arena-battle", tmp_path)
    vote(page, "A is better", "A is better")

    # A second battle, a tie: two votes that differ give the ratings intervals of some width.
    page.get_by_role("button", name="New battle").click()
    battle(page, "What is 4 + 4? Answer with the number only.")
    vote(page, "Tie", "a tie")

    # The board reloads after the vote: both models, each rating with its 95% interval.
    expect(board.locator("tbody tr")).to_have_count(2)
    counted = page.get_by_text(re.compile(r"^\d+ counted votes"))
    expect(counted).to_be_visible()
    assert int(counted.inner_text().split()[0]) >= 2
    for model in MODELS:
        row = board.get_by_role("row").filter(has=page.get_by_role("rowheader", name=model))
        expect(row).to_have_count(1)
        cells = row.get_by_role("cell")
        interval = cells.nth(2)
        assert INTERVAL.match(interval.inner_text().strip()), interval.inner_text()
        expect(interval.locator("svg.arena-bar line.arena-bar-ci")).to_have_count(1)
        lower, upper = (float(x) for x in interval.inner_text().strip().split(DASH))
        rating = float(cells.nth(1).inner_text())
        assert lower <= rating <= upper, (lower, rating, upper)
        expect(cells.nth(3)).to_contain_text(re.compile(r"\d+ won, \d+ lost, \d+ tied"))
    expect(page.get_by_text("Intervals from")).to_contain_text("bootstrap resamples")
    page.get_by_role("table", name="Global leaderboard").scroll_into_view_if_needed()
    shoot(page, "arena-leaderboard", tmp_path)

    # In a 480 px window the page does not scroll sideways (the board scrolls inside it).
    page.set_viewport_size({"width": 480, "height": 800})
    page.get_by_role("button", name="New battle").click()
    expect(page.get_by_label("Max tokens")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
