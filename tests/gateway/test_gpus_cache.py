"""/health's cache of the nodes and node agent reports (`gpus.cluster.TtlCache`): one read
per period, stale answers instead of waiting, failures kept for the period too."""

from __future__ import annotations

import asyncio

import pytest

from modelserve.gateway.gpus.cluster import ClusterUnreadable, TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_read_per_period_and_stale_answers_while_reading() -> None:
    async def scenario() -> None:
        clock = Clock()
        cache: TtlCache[int] = TtlCache(5.0, clock)
        reads: list[int] = []
        gate = asyncio.Event()

        async def load() -> int:
            reads.append(len(reads) + 1)
            if len(reads) > 1:
                await gate.wait()
            return len(reads)

        assert await cache.get(load, wait=1) == 1
        clock.now = 4.9
        assert await cache.get(load, wait=1) == 1 and reads == [1]
        clock.now = 5.0
        # Stale: answered at once, one read under way however many ask.
        answers = await asyncio.gather(*(cache.get(load, wait=1) for _ in range(10)))
        assert answers == [1] * 10 and reads == [1, 2]
        gate.set()
        await asyncio.sleep(0.01)
        assert await cache.get(load, wait=1) == 2

    asyncio.run(scenario())


def test_the_first_reader_waits_a_bounded_time_and_failures_are_kept() -> None:
    async def scenario() -> None:
        clock = Clock()
        cache: TtlCache[int] = TtlCache(5.0, clock)
        calls = 0

        async def hanging() -> int:
            await asyncio.sleep(10)
            return 0

        with pytest.raises(ClusterUnreadable, match=r"did not answer within 0\.05 s"):
            await cache.get(hanging, wait=0.05)

        refused = TtlCache[int](5.0, clock)

        async def refusing() -> int:
            nonlocal calls
            calls += 1
            raise ClusterUnreadable("the cluster did not let the gateway list nodes: 403")

        for _ in range(3):
            with pytest.raises(ClusterUnreadable, match="403"):
                await refused.get(refusing, wait=1)
        assert calls == 1

    asyncio.run(scenario())
