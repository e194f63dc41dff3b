"""What a job type is: an executor that runs one item, and optionally a finisher that
writes the finished job's files and summary.

An executor returns the item's output, or raises ItemFailed (the item can never succeed:
recorded as failed) or ItemRetry (it may succeed later: run again until the attempts run
out). A finisher (`modelserve.jobs.outputs`) runs once per finished job."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from modelserve.jobs.outputs import Finisher
    from modelserve.jobs.store import Item


class ItemFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def as_error(self) -> dict[str, Any]:
        return {"code": self.code, "message": str(self)}


class ItemRetry(ItemFailed):
    """A failure worth another attempt (a peer unreachable, overloaded, or in error)."""


class ItemBusy(ItemRetry):
    """The gateway (or the owner's limits) is busy: 429 or 503, with the wait it asked for
    (`retry_after`, seconds). Such waits use up no attempt, up to JOBS_MAX_BUSY_RETRIES."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class Executor(Protocol):
    async def __call__(self, item: Item) -> Any: ...


Executors = Mapping[str, Executor]
Finishers = Mapping[str, "Finisher"]
