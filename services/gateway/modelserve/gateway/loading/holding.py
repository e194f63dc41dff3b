"""Holding requests for an autoscaled server that does not serve right now (asleep,
waking, loading or being put to sleep), until it does.

Bounded per server: at most `queue` requests wait (the next one gets 429 with
Retry-After), each at most `timeout` seconds (then 503 with Retry-After and why the
model is not there yet). A held request is counted in the load book (the reporter tells
the operator at once of a first one: that wakes the model) until it goes on, fails or
its client leaves (its task is cancelled: the count goes down at once).

Waiting is on the route table's changes (`RouteTable.changes`), never a poll: a request
goes on in the loop turn after discovery put a ready endpoint of its server in the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.loading.states import Fail, Go, verdict
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.openai_errors import OpenAIError
from modelserve.gateway.routing import RouteTable, Target, holdable

# Seconds a client whose request could not be held is told to wait before it retries.
QUEUE_FULL_RETRY_SECONDS = 5
# ... and one whose model did not come in time, or cannot be placed.
STILL_LOADING_RETRY_SECONDS = 30


class Outcome(enum.StrEnum):
    """How a hold ended (metric label)."""

    FORWARDED = "forwarded"
    TIMEOUT = "timeout"
    QUEUE_FULL = "queue_full"
    CLIENT_LEFT = "client_left"
    FAILED = "failed"


def queue_full(target: Target, queue: int) -> OpenAIError:
    return OpenAIError(
        429,
        f"the model {target.served_name!r} is loading and {queue} requests already wait "
        f"for it; retry in {QUEUE_FULL_RETRY_SECONDS} s",
        code="model_loading_queue_full",
        headers={"Retry-After": str(QUEUE_FULL_RETRY_SECONDS)},
        model=target.served_name,
    )


def still_loading(target: Target, waited: float, reason: str) -> OpenAIError:
    return OpenAIError(
        503,
        f"the model {target.served_name!r} is still loading after {math.floor(waited)} s "
        f"({reason}); retry in {STILL_LOADING_RETRY_SECONDS} s",
        code="model_loading_timeout",
        headers={"Retry-After": str(STILL_LOADING_RETRY_SECONDS)},
        model=target.served_name,
    )


def cannot_load(target: Target, failed: Fail) -> OpenAIError:
    return OpenAIError(
        503,
        f"the model {target.served_name!r} cannot be loaded: {failed.message}",
        code=failed.code,
        headers={"Retry-After": str(STILL_LOADING_RETRY_SECONDS)},
        model=target.served_name,
    )


class Holder:
    """The holds of every server; made once, shared by every request."""

    def __init__(
        self,
        table: RouteTable,
        book: LoadBook,
        metrics: GatewayMetrics,
        *,
        queue: int,
        timeout: float,
        keepalive: float,
    ) -> None:
        self.table = table
        self.book = book
        self.metrics = metrics
        self.queue = queue
        self.timeout = timeout
        self.keepalive = keepalive

    def needed(self, target: Target) -> bool:
        """Whether a request for `target` must wait for it now (else it goes on as
        always), by the table's current version of it (a drain may have come since the
        request was routed). The caller that goes on must count its request in the book
        with no `await` in between: a drain seen after this check then finds it."""
        current = self.table.current(target)
        return holdable(current) and not self.table.serving(current)

    def check_room(self, target: Target) -> None:
        """429 when the server's queue is full (before the contract is asked: a request
        that cannot wait should not reserve tokens)."""
        if self.book.holding(target.server_id) >= self.queue:
            self._ended(target, Outcome.QUEUE_FULL, None)
            raise queue_full(target, self.queue)

    @contextlib.asynccontextmanager
    async def hold(self, target: Target) -> AsyncIterator[Hold]:
        """A place in the server's queue, counted held until the block ends. Raises the
        client's OpenAIError at once when the queue is full or waiting cannot help."""
        self.check_room(target)
        found = verdict(self.table.server(target.server_id), False, model=target.served_name)
        if isinstance(found, Fail):
            self._ended(target, Outcome.FAILED, None)
            raise cannot_load(target, found)
        hold = Hold(self, target)
        self.book.held(target.server_id)
        self.metrics.held.labels(target.served_name).inc()
        try:
            yield hold
        except asyncio.CancelledError:
            hold.outcome = hold.outcome or Outcome.CLIENT_LEFT
            raise
        finally:
            self.book.released(target.server_id)
            self.metrics.held.labels(target.served_name).dec()
            self._ended(target, hold.outcome or Outcome.CLIENT_LEFT, hold.started)

    @contextlib.asynccontextmanager
    async def admitted(
        self, targets: Sequence[Target], tick: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[list[Target]]:
        """`targets` (their current versions) once every one serves, each held
        meanwhile (all at once: they wake together), and counted running in the book
        until the block ends: a scaled request, from its first call to its last."""
        while True:
            current = [self.table.current(target) for target in targets]
            waiting = [target for target in current if self.needed(target)]
            if not waiting:
                break
            async with contextlib.AsyncExitStack() as stack:
                holds = [await stack.enter_async_context(self.hold(t)) for t in waiting]
                for hold in holds:
                    await hold.ready(tick)
            # One may have stopped serving while another was waited for: check again.
        # No await since the last check: a drain seen from now on finds them running.
        with self.book.running([target.server_id for target in current]):
            yield current

    def _ended(self, target: Target, outcome: Outcome, started: float | None) -> None:
        model = target.served_name
        self.metrics.holds.labels(model, outcome.value).inc()
        if started is not None:
            self.metrics.hold_seconds.labels(model).observe(time.monotonic() - started)


class Hold:
    """One held request: `ready()` waits until its server serves."""

    def __init__(self, holder: Holder, target: Target) -> None:
        self._holder = holder
        self.target = target
        self.started = time.monotonic()
        self.outcome: Outcome | None = None

    async def ready(self, tick: Callable[[], Awaitable[None]] | None = None) -> Target:
        """The server's target once it serves. Raises the client's OpenAIError when it
        fails or the hold times out. `tick` is awaited every `keepalive` seconds of
        waiting (a stream's keep-alive comment)."""
        holder = self._holder
        table = holder.table
        deadline = self.started + holder.timeout
        woken = False  # by a change of the route table
        while True:
            current = table.server(self.target.server_id)
            serving = current is not None and table.serving(current)
            found = verdict(current, serving, model=self.target.served_name)
            if isinstance(found, Go):
                self.outcome = Outcome.FORWARDED
                if woken:
                    since = time.monotonic() - table.changes.at
                    holder.metrics.hold_release_seconds.observe(since)
                return found.target
            if isinstance(found, Fail):
                self.outcome = Outcome.FAILED
                raise cannot_load(self.target, found)
            left = deadline - time.monotonic()
            if left <= 0:
                self.outcome = Outcome.TIMEOUT
                raise still_loading(self.target, time.monotonic() - self.started, found.reason)
            wait = min(left, holder.keepalive) if tick is not None else left
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(table.changes.wait(), wait)
                woken = True
                continue
            if tick is not None and deadline - time.monotonic() > 0:
                await tick()
