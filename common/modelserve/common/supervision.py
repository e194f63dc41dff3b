"""Background work that never dies silently: one supervisor for every service.

A loop a service runs for its whole life (the contract's reload, housekeeping and
inventory; the gateway's usage outbox; the download workers, their listener and the tag
back-fill) runs under `supervised`: when it raises, the failure is logged with its
traceback and the loop is started again after a pause that doubles with each failure in a
row, up to a cap. A loop that fails for as long as an outage lasts shows in the log, and
picks up by itself once the outage is over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Pauses between restarts: `first` s, doubling with each failure in a row up to `cap`;
    a run that lasted `cap` s or more counts as healthy and resets the pause."""

    first: float = 1.0
    cap: float = 60.0

    def delay(self, failures: int) -> float:
        """The pause after `failures` (1 or more) failures in a row."""
        return min(self.cap, self.first * 2.0 ** min(max(0, failures - 1), 30))


async def supervised(
    name: str,
    work: Callable[[], Awaitable[None]],
    backoff: Backoff,
    *,
    until_done: bool = False,
) -> None:
    """Run `work()` until cancelled, again whenever it raises. With `until_done`, a run
    that returns ends the supervision (one-off work); without it, a return is a bug in a
    loop meant to run forever, logged and restarted like a failure."""
    failures = 0
    while True:
        started = time.monotonic()
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            failures = _counted(failures, started, backoff)
            delay = backoff.delay(failures)
            logger.exception(
                "%s failed (%d in a row); starting it again in %.1f s", name, failures, delay
            )
        else:
            if until_done:
                return
            failures = _counted(failures, started, backoff)
            delay = backoff.delay(failures)
            logger.error(
                "%s returned, which it never should; starting it again in %.1f s", name, delay
            )
        await asyncio.sleep(delay)


def _counted(failures: int, started: float, backoff: Backoff) -> int:
    """Failures in a row, this one included: a run that lasted long was healthy."""
    return (0 if time.monotonic() - started >= backoff.cap else failures) + 1


def start_supervised(
    name: str, work: Callable[[], Awaitable[None]], backoff: Backoff | None = None
) -> asyncio.Task[None]:
    """`supervised(name, work)` as a task named `name` (default backoff: 1 s to 60 s)."""
    return asyncio.create_task(supervised(name, work, backoff or Backoff()), name=name)
