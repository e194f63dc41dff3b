"""A job's progress bar for the CLI (stderr): finished items out of all, and the job's
own rate and time left, as the service reports them in `progress` (not as tqdm would
guess them from the polls). `render` is the line it shows, pure, for tests."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import IO, Never

from tqdm import tqdm

from modelserve.client.jobs.answers import Tracked

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix}"


def postfix(job: Tracked) -> str:
    """What follows the bar: the rate, the time left, the state and any failed items,
    e.g. `2.50 items/s, ETA 00:14, running, 1 failed`."""
    progress = job.progress
    rate = "? items/s" if progress.rate is None else f"{progress.rate:.2f} items/s"
    eta = "?" if progress.eta_seconds is None else tqdm.format_interval(progress.eta_seconds)
    parts = [rate, f"ETA {eta}", job.status]
    if progress.failed:
        parts.append(f"{progress.failed} failed")
    return ", ".join(parts)


def render(job: Tracked, description: str, ncols: int = 80, ascii: bool = False) -> str:
    """The bar's line for `job`, `ncols` characters at most (`ascii`: drawn with `#`, as
    tqdm does on a stream that cannot take Unicode)."""
    progress = job.progress
    return tqdm.format_meter(
        progress.done + progress.failed,
        progress.total,
        0,
        ncols=ncols,
        prefix=description[:32],
        ascii=ascii,
        bar_format=BAR_FORMAT,
        postfix=postfix(job),
    )


class JobBar:
    """An `on_progress` for wait_for_job: draws the bar with the first poll's answer and
    redraws it with every later one; a new line at the end."""

    def __init__(
        self, description: str, *, file: IO[str] | None = None, ncols: int | None = None
    ) -> None:
        self._description = description[:32]
        self._file = sys.stderr if file is None else file
        self._ncols = ncols
        self._bar: tqdm[Never] | None = None

    def __call__(self, job: Tracked) -> None:
        progress = job.progress
        finished = progress.done + progress.failed
        if self._bar is None:
            self._bar = tqdm(
                total=progress.total,
                initial=finished,
                desc=self._description,
                bar_format=BAR_FORMAT,
                postfix=postfix(job),
                file=self._file,
                ncols=self._ncols,
            )
            return
        self._bar.total = progress.total
        self._bar.n = finished
        self._bar.set_postfix_str(postfix(job), refresh=False)
        self._bar.refresh()

    def __enter__(self) -> JobBar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
