"""The sign-in limits' two pure parts: a sliding window per key and a bounded gate (the
gateway's use of them is tested in test_sign_in_limits.py)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from modelserve.gateway.identity import _issued_at
from modelserve.gateway.throttling import BoundedGate, Busy, SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_may_act_limit_times_per_window_and_is_told_when_again() -> None:
    clock = Clock()
    window = SlidingWindow(3, 60, clock=clock)
    for second in (0, 10, 20):
        clock.now = second
        assert window.retry_after("alice") is None
        window.record("alice")
    assert window.retry_after("alice") == 40  # the first attempt leaves the window at 60
    assert window.retry_after("bob") is None
    clock.now = 60
    assert window.retry_after("alice") is None


def test_made_up_keys_cannot_grow_the_memory() -> None:
    window = SlidingWindow(1, 60, keys_kept=10, clock=Clock())
    for n in range(1000):
        window.record(f"user-{n}")
    assert window.retry_after("user-999") == 60
    assert window.retry_after("user-0") is None  # forgotten: the oldest go first


def test_the_gate_lets_at_once_plus_queue_in_and_refuses_the_rest() -> None:
    gate = BoundedGate(at_once=2, queue=1)
    release = asyncio.Event()
    running = 0
    most = 0

    async def work() -> None:
        nonlocal running, most
        async with gate.slot():
            running += 1
            most = max(most, running)
            await release.wait()
            running -= 1

    async def scenario() -> list[BaseException | None]:
        tasks = [asyncio.create_task(work()) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert [type(result) for result in results] == [type(None)] * 3 + [Busy] * 2
    assert most == 2
    # Afterwards the gate is empty again.
    asyncio.run(_enter(gate))


async def _enter(gate: BoundedGate) -> None:
    async with gate.slot():
        pass


def test_a_gate_with_no_queue_refuses_while_full() -> None:
    gate = BoundedGate(at_once=1, queue=0)

    async def scenario() -> None:
        async with gate.slot():
            with pytest.raises(Busy):
                async with gate.slot():
                    pass

    asyncio.run(scenario())


def test_an_attempt_counted_ahead_can_be_taken_back() -> None:
    clock = iter(range(100))
    window = SlidingWindow(limit=2, window=60, clock=lambda: float(next(clock)))
    window.record("alice")
    window.record("alice")
    assert window.retry_after("alice") is not None
    window.forget_one("alice")  # that attempt turned out to be a success
    assert window.retry_after("alice") is None
    window.forget_one("nobody")  # nothing to take back: no error


def test_a_token_is_issued_as_of_when_its_account_was_read() -> None:
    """A revocation that lands during the password check (not-before = the next second)
    must void the token: its iat is the time the row was read, not the time of signing."""
    read_at = 1_800_000_000
    assert _issued_at(None, read_at) == read_at
    earlier = dt.datetime.fromtimestamp(read_at - 60, dt.UTC)
    assert _issued_at(earlier, read_at) == read_at
    # A not-before in the current second (the user's own bump): never before it.
    ahead = dt.datetime.fromtimestamp(read_at + 1, dt.UTC)
    assert _issued_at(ahead, read_at) == read_at + 1
