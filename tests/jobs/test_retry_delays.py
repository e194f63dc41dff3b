"""How long an item that failed in a way worth retrying waits (modelserve.jobs.worker)."""

from __future__ import annotations

from modelserve.jobs.worker import retry_delay


def test_retry_delays_double_up_to_their_cap() -> None:
    assert [retry_delay(n, 5, 30) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]
    assert retry_delay(1, 0, 30) == 0
