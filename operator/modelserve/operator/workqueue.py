"""ModelServes whose status is to be computed again, each waiting at most once.

Child events only mark their ModelServe here and return, so kopf drops their bodies at
once; a few drainers compute each status from the indexes as they are when its turn
comes. However many events mark a ModelServe meanwhile, its status is computed and
written once for all of them. A key is never worked on by two drainers at once: marked
while busy, it waits until the work at hand ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

Key = tuple[str, str]
logger = logging.getLogger(__name__)


class WorkQueue:
    def __init__(self, retry_delay: float = 5.0) -> None:
        self._retry_delay = retry_delay
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._waiting: set[Key] = set()  # in the queue
        self._busy: set[Key] = set()  # being worked on
        self._again: set[Key] = set()  # busy, and marked since its work began

    def __len__(self) -> int:
        return len(self._waiting) + len(self._again)

    def mark(self, key: Key) -> None:
        if key in self._busy:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)

    async def drain(self, work: Callable[[Key], Awaitable[None]]) -> None:
        """Do `work` on each key as it comes, forever; run several to work in parallel.

        Work that fails is logged and its key marked again after `retry_delay` seconds.
        """
        while True:
            key = await self._queue.get()
            self._waiting.discard(key)
            self._busy.add(key)
            try:
                await work(key)
            except Exception:
                logger.exception("work on %s/%s failed; trying again later", *key)
                asyncio.get_running_loop().call_later(self._retry_delay, self.mark, key)
            finally:
                self._busy.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self.mark(key)
