"""The status work queue: marks coalesce, one key is never worked on twice at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from modelserve.operator.workqueue import Key, WorkQueue


def run_drainers(
    queue: WorkQueue, work: Callable[[Key], Awaitable[None]], drainers: int, until: asyncio.Event
) -> None:
    async def main() -> None:
        tasks = [asyncio.create_task(queue.drain(work)) for _ in range(drainers)]
        await asyncio.wait_for(until.wait(), timeout=5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def test_marks_of_a_waiting_key_are_worked_on_once() -> None:
    queue = WorkQueue()
    done: list[Key] = []
    finished = asyncio.Event()

    async def work(key: Key) -> None:
        done.append(key)
        if len(done) == 2:
            finished.set()

    for _ in range(5):
        queue.mark(("ns", "a"))
    queue.mark(("ns", "b"))
    assert len(queue) == 2
    run_drainers(queue, work, drainers=3, until=finished)
    assert sorted(done) == [("ns", "a"), ("ns", "b")]


def test_a_key_marked_while_busy_waits_for_the_work_at_hand() -> None:
    queue = WorkQueue()
    running: set[Key] = set()
    overlaps: list[Key] = []
    rounds: list[Key] = []
    finished = asyncio.Event()

    async def work(key: Key) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        rounds.append(key)
        if len(rounds) == 1:
            queue.mark(key)  # an event for the same ModelServe while its status is computed
            queue.mark(key)
            await asyncio.sleep(0.05)  # other drainers are free meanwhile
        running.discard(key)
        if len(rounds) == 2:
            finished.set()

    queue.mark(("ns", "a"))
    run_drainers(queue, work, drainers=4, until=finished)
    assert overlaps == []
    assert rounds == [("ns", "a"), ("ns", "a")]  # worked on again, once, after the first round


def test_failed_work_is_tried_again_later() -> None:
    queue = WorkQueue(retry_delay=0.01)
    attempts: list[Key] = []
    finished = asyncio.Event()

    async def work(key: Key) -> None:
        attempts.append(key)
        if len(attempts) == 1:
            raise RuntimeError("the API server answered 500")
        finished.set()

    queue.mark(("ns", "a"))
    run_drainers(queue, work, drainers=1, until=finished)
    assert attempts == [("ns", "a"), ("ns", "a")]
