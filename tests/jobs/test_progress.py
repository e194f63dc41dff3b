"""A job's progress: fraction, rate and time left, from counts and the clock."""

from __future__ import annotations

import datetime as dt

import pytest

from modelserve.jobs.progress import progress

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_a_job_not_started_has_no_rate_and_no_eta() -> None:
    p = progress(total=10, done=0, failed=0, started_at=None, finished_at=None, now=at(5))
    assert (p.fraction, p.rate, p.eta_seconds) == (0.0, None, None)


def test_rate_and_eta_from_the_items_finished_since_the_start() -> None:
    p = progress(total=100, done=20, failed=5, started_at=at(0), finished_at=None, now=at(10))
    assert p.fraction == 0.25
    assert p.rate == pytest.approx(2.5)
    assert p.eta_seconds == pytest.approx(30.0)


def test_a_finished_job_keeps_its_rate_over_its_own_length() -> None:
    p = progress(total=4, done=4, failed=0, started_at=at(0), finished_at=at(2), now=at(100))
    assert (p.fraction, p.rate, p.eta_seconds) == (1.0, 2.0, 0.0)


def test_a_cancelled_job_has_no_eta() -> None:
    p = progress(total=10, done=3, failed=0, started_at=at(0), finished_at=at(3), now=at(9))
    assert p.fraction == 0.3
    assert p.eta_seconds is None
