"""Running upstream calls together so that none outlives its caller."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def gather_all(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """The results of all `coroutines`, run at once, in their order.

    They run under one `asyncio.TaskGroup`: when the caller is cancelled (a client that
    went away), or one of them fails, every other one is cancelled and awaited before
    this returns. A failure is raised as itself, not wrapped in an exception group, so
    that callers can catch the upstream errors they know; with several failures, the
    first is raised and the group is its cause.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from failures
    return [task.result() for task in tasks]
