"""Background loops that never die silently.

A loop the gateway runs for its whole life (the usage outbox's writer and sender) runs
under `supervised`: if it fails, the failure is logged with its traceback and the loop is
started again after a pause that doubles with each failure in a row (up to a cap), so a
bug or an outage that lasts shows in the log rather than as usage that quietly stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


def restart_delay(failures: int, first: float, cap: float) -> float:
    """The pause before the restart after `failures` failures in a row (1 or more)."""
    return min(cap, first * 2.0 ** min(max(0, failures - 1), 60))


async def supervised(
    name: str,
    loop: Callable[[], Awaitable[None]],
    *,
    first_delay: float = 1.0,
    max_delay: float = 60.0,
    healthy_after: float = 60.0,
) -> None:
    """Run `loop()` until cancelled, starting it again whenever it fails or returns.

    A run that lasted `healthy_after` seconds or more resets the pause to `first_delay`.
    """
    failures = 0
    clock = asyncio.get_running_loop()
    while True:
        started = clock.time()
        try:
            await loop()
            logger.error("%s returned, which it never should; starting it again", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            if clock.time() - started >= healthy_after:
                failures = 0
            failures += 1
            delay = restart_delay(failures, first_delay, max_delay)
            logger.exception(
                "%s failed (%d in a row); starting it again in %.1f s", name, failures, delay
            )
            await asyncio.sleep(delay)
            continue
        await asyncio.sleep(first_delay)


def start_supervised(
    name: str, loop: Callable[[], Awaitable[None]], **delays: float
) -> asyncio.Task[None]:
    """`supervised(name, loop)` as a task named `name`."""
    return asyncio.create_task(supervised(name, loop, **delays), name=name)
