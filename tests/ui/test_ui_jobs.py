"""The jobs page in a real browser against `make dev`'s platform: a dataset uploaded
through the page's file input, an evaluation of SmolLM2 started from the page and
followed to its accuracy and per-example table, and a second, larger one cancelled after
the confirmation. Kept small: SmolLM2-135M answers on the machine's CPUs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from modelserve.testbed.arithmetic import tasks
from modelserve.testbed.ui_session import SERVED, shoot, sign_in_as_admin

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]

JOB_MS = 120_000  # three 8-token answers, with the jobs service's polling around them


def dataset(folder: Path, count: int) -> Path:
    path = folder / f"arithmetic-{count}.jsonl"
    examples = [{"id": t.id, "question": t.question, "answer": t.answer} for t in tasks(count)]
    path.write_text("".join(json.dumps(example) + "\n" for example in examples))
    return path


def queue_evaluation(
    page: Page, name: str, path: Path, max_samples: int | None, max_tokens: int
) -> str:
    """Upload `path` through the page, start an evaluation of it: the job's id."""
    form = page.get_by_role("region", name="Start an evaluation")
    form.get_by_label("Dataset file to upload (.jsonl)").set_input_files(path)
    form.get_by_role("button", name="Upload dataset").click()
    uploaded = form.get_by_role("status").filter(has_text="Uploaded")
    expect(uploaded).to_contain_text(f"Uploaded {path.name} as file-")
    dataset_ref = form.get_by_label("Dataset (dataset_ref)")
    expect(dataset_ref).to_have_value(re.compile(r"^file-"))
    form.get_by_label("Model (served name)").fill(SERVED)
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_label("Max samples").fill("" if max_samples is None else str(max_samples))
    form.get_by_label("Max tokens per answer").fill(str(max_tokens))
    form.get_by_role("button", name="Start evaluation").click()
    queued = form.get_by_role("status").filter(has_text="Queued")
    expect(queued).to_be_visible()
    job_id = queued.get_by_role("link").inner_text()
    assert job_id.startswith("eval_"), job_id
    return job_id


def test_an_evaluation_from_upload_to_its_examples(
    page: Page, platform: dict[str, str], tmp_path: Path
) -> None:
    sign_in_as_admin(page, platform)
    page.get_by_role("link", name="Jobs").click()
    job_id = queue_evaluation(page, "ui-arithmetic", dataset(tmp_path, 5), 3, 16)
    expect(page.get_by_role("region", name="Start an evaluation")).to_contain_text("(3 examples)")

    # The list: the job with its progress, refreshed until it is done.
    jobs = page.get_by_role("table", name=re.compile("^Jobs, newest first"))
    row = jobs.get_by_role("row").filter(has=page.get_by_role("link", name=job_id))
    expect(row).to_have_count(1)
    expect(row.get_by_role("progressbar", name=f"Progress of {job_id}")).to_be_visible()
    expect(row).to_contain_text(SERVED)
    expect(row.locator(".job-status")).to_have_text("done", timeout=JOB_MS)
    expect(row).to_contain_text("3 / 3 done")
    expect(page.get_by_role("alert")).to_have_count(0)
    shoot(page, "jobs", tmp_path)

    # The job: its accuracy, correct of judged, and each example.
    row.get_by_role("link", name=job_id).click()
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()
    result = page.get_by_role("region", name="Evaluation")
    expect(result).to_contain_text("Accuracy")
    expect(result).to_contain_text(re.compile(r"\d of 3 judged"))
    expect(result).to_contain_text("ui-arithmetic")
    examples = result.get_by_role("table", name=re.compile("^Examples"))
    expect(examples).to_contain_text("Examples 1\u20133 of 3")
    expect(examples.locator("tbody tr")).to_have_count(3)
    for question in tasks(3):
        expect(examples.get_by_role("row").filter(has_text=f"{question.answer}")).not_to_have_count(
            0
        )
    expect(page.get_by_role("alert")).to_have_count(0)
    shoot(page, "job-eval", tmp_path)


def test_an_evaluation_followed_on_its_own_page(
    page: Page, platform: dict[str, str], tmp_path: Path
) -> None:
    """Opened while it runs, the job's page fills in its result and every example."""
    sign_in_as_admin(page, platform)
    page.get_by_role("link", name="Jobs").click()
    job_id = queue_evaluation(page, "ui-arithmetic-followed", dataset(tmp_path, 3), None, 8)
    page.get_by_role("region", name="Start an evaluation").get_by_role("link", name=job_id).click()
    result = page.get_by_role("region", name="Evaluation")
    expect(result).to_contain_text(re.compile(r"\d of 3 judged"), timeout=JOB_MS)
    examples = result.get_by_role("table", name=re.compile("^Examples"))
    expect(examples.locator("tbody tr")).to_have_count(3)
    expect(examples).not_to_contain_text("No finished example")


def test_a_running_evaluation_is_cancelled_after_the_confirmation(
    page: Page, platform: dict[str, str], tmp_path: Path
) -> None:
    sign_in_as_admin(page, platform)
    page.get_by_role("link", name="Jobs").click()
    job_id = queue_evaluation(page, "ui-arithmetic-cancelled", dataset(tmp_path, 40), None, 64)
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=job_id))
    cancel = row.get_by_role("button", name=f"Cancel {job_id}")

    # Dismissed, the job goes on; confirmed, it is cancelled.
    questions: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    cancel.click()
    expect(cancel).to_be_visible()
    assert questions == [
        f"Cancel job {job_id}? Items not yet run are never run; what finished is kept."
    ]
    page.once("dialog", lambda dialog: dialog.accept())
    cancel.click()
    expect(row.locator(".job-status")).to_have_text("cancelled", timeout=30_000)
    expect(cancel).to_have_count(0)
    expect(row).not_to_contain_text("40 / 40 done")
    expect(page.get_by_role("alert")).to_have_count(0)
