"""Wait for a condition that other processes make true (a pod Running, a row visible)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.25
) -> T:
    """Call `probe` until it returns something truthy and return that; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def early_in_a_minute(margin: float = 15.0) -> None:
    """Wait, if need be, until a new minute has begun. For tests of per-minute rate
    windows (calendar minutes of PostgreSQL's clock, on this same machine): a test that
    counts requests in one minute must not straddle two."""
    into = time.time() % 60
    if into > 60 - margin:
        time.sleep(60 - into + 0.5)
