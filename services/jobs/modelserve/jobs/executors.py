"""What runs one item of a job, by job type. An executor returns the item's output, or
raises ItemFailed (the item can never succeed: recorded as failed) or ItemRetry (it may
succeed later: run again until the attempts run out)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol


class ItemFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def as_error(self) -> dict[str, Any]:
        return {"code": self.code, "message": str(self)}


class ItemRetry(ItemFailed):
    """A failure worth another attempt (a peer unreachable, overloaded, or in error)."""


class Executor(Protocol):
    async def __call__(self, item: Any) -> Any: ...


Executors = Mapping[str, Executor]
ExecutorFactory = Callable[[], Executor]
