"""The job progress bar's line (modelserve.client.jobs.bar): finished items out of all,
and the job's own rate and time left from its `progress`, never guessed from the polls."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from modelserve.client.jobs.answers import Job
from modelserve.client.jobs.bar import JobBar, postfix, render

CREATED = dt.datetime(2026, 12, 5, 23, 0, tzinfo=dt.UTC)


def job(status: str = "running", **progress: Any) -> Job:
    figures = {"total": 40, "done": 10, "failed": 2, "fraction": 0.3}
    figures.update(progress)
    return Job.model_validate(
        {
            "id": "job_1",
            "type": "eval",
            "owner": "dana",
            "status": status,
            "total": figures["total"],
            "done": figures["done"],
            "failed": figures["failed"],
            "created_at": CREATED,
            "progress": figures,
        }
    )


def test_a_running_job_shows_its_rate_eta_and_failed_items() -> None:
    line = render(job(rate=2.5, eta_seconds=11.2), "job_1")
    assert (
        line == "job_1:  30%|█████            | 12/40, 2.50 items/s, ETA 00:11, running, 2 failed"
    )
    assert len(line) == 80


def test_before_any_item_finished_rate_and_eta_are_unknown() -> None:
    assert postfix(job("pending", done=0, failed=0, fraction=0.0)) == "? items/s, ETA ?, pending"


def test_a_long_job_s_eta_has_hours_and_no_failed_part_without_failures() -> None:
    line = render(job(total=100_000, done=500, failed=0, rate=10.0, eta_seconds=9950.0), "j")
    assert line.endswith("| 500/100000, 10.00 items/s, ETA 2:45:50, running")


def test_a_cancelled_job_keeps_its_count_and_says_so() -> None:
    text = postfix(job("cancelled", rate=1.0, eta_seconds=None))
    assert text == "1.00 items/s, ETA ?, cancelled, 2 failed"


def test_the_bar_draws_each_poll_s_answer_as_render_does() -> None:
    out = io.StringIO()  # no Unicode declared: tqdm draws with ASCII, as render(ascii=True)
    polls = [
        job(rate=2.5, eta_seconds=11.2),
        job("done", done=38, fraction=1.0, rate=3.0, eta_seconds=0.0),
    ]
    with JobBar("job_1", file=out, ncols=80) as bar:
        for answer in polls:
            bar(answer)
    drawn = [line for line in out.getvalue().split("\r") if line.strip()]
    assert drawn[0] == render(polls[0], "job_1", ascii=True)
    assert drawn[-1].rstrip("\n") == render(polls[1], "job_1", ascii=True)
    assert drawn[-1].endswith("40/40, 3.00 items/s, ETA 00:00, done, 2 failed\n")
