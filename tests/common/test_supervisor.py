"""Background loops under `supervised`, the one supervisor of every service: a failure is
logged with its traceback and the loop runs again, after a pause that doubles with each
failure in a row."""

from __future__ import annotations

import asyncio
import logging

import pytest

from modelserve.common.supervision import Backoff, supervised


def test_restart_delays_double_up_to_their_cap() -> None:
    assert [Backoff(1.0, 60.0).delay(n) for n in (1, 2, 3, 7, 10_000)] == [1, 2, 4, 60, 60]


def test_a_failing_loop_is_logged_and_started_again(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    async def main() -> None:
        third = asyncio.Event()

        async def loop() -> None:
            runs.append(len(runs))
            if len(runs) <= 2:
                raise RuntimeError(f"broken run {len(runs)}")
            third.set()
            await asyncio.sleep(3600)  # the third run lasts

        task = asyncio.create_task(supervised("usage-test", loop, Backoff(first=0.01)))
        await third.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.ERROR, logger="modelserve.common.supervision"):
        asyncio.run(main())
    assert runs == [0, 1, 2]
    failures = [record for record in caplog.records if record.exc_info]
    assert [str(record.exc_info[1]) for record in failures if record.exc_info] == [
        "broken run 1",
        "broken run 2",
    ]
    assert "usage-test failed (2 in a row)" in failures[1].getMessage()


def test_restart_pauses_double_up_to_the_cap() -> None:
    backoff = Backoff(first=0.5, cap=4.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_one_off_work_is_restarted_until_it_completes() -> None:
    attempts: list[int] = []

    async def flaky() -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    asyncio.run(supervised("flaky", flaky, Backoff(first=0.001, cap=0.002), until_done=True))
    assert attempts == [1, 2, 3]
