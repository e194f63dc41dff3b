"""Limits on signing in, per gateway process: how many attempts a key (a user name, a
client address) may make in a sliding window, and how many password checks may run or
wait at once.

Both live in the process's memory: with N replicas behind a load balancer a user may
make up to N times the attempts, and the bounds on Argon2 work hold per replica (which is
what protects each replica's memory and CPU).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

# Keys (names, addresses) remembered at most; the least recently seen are forgotten first,
# so that a flood of made-up names cannot grow the gateway's memory.
KEYS_KEPT = 100_000


class SlidingWindow:
    """At most `limit` events per key in any `window` seconds."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        keys_kept: int = KEYS_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._keys_kept = keys_kept
        self._clock = clock
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            return deque()
        horizon = self._clock() - self._window
        while events and events[0] <= horizon:
            events.popleft()
        return events

    def retry_after(self, key: str) -> int | None:
        """Whole seconds until `key` may act again, or None if it may now."""
        events = self._recent(key)
        if len(events) < self._limit:
            return None
        return max(1, math.ceil(events[0] + self._window - self._clock()))

    def forget_one(self, key: str) -> None:
        """Take back the latest event of `key` (an attempt counted ahead that did not fail)."""
        events = self._events.get(key)
        if events:
            events.pop()

    def record(self, key: str) -> None:
        events = self._recent(key)
        events.append(self._clock())
        while len(events) > self._limit:
            events.popleft()  # only the newest `limit` matter
        self._events[key] = events
        self._events.move_to_end(key)
        while len(self._events) > self._keys_kept:
            self._events.popitem(last=False)


class Busy(Exception):
    """More work waits than the queue holds."""


class BoundedGate:
    """At most `at_once` holders, at most `queue` more waiting; beyond that `Busy`."""

    def __init__(self, at_once: int, queue: int) -> None:
        self._semaphore = asyncio.Semaphore(at_once)
        self._capacity = at_once + queue
        self._inside = 0  # holding or waiting

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._inside >= self._capacity:
            raise Busy
        self._inside += 1
        try:
            async with self._semaphore:
                yield
        finally:
            self._inside -= 1
