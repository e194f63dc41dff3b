"""GET /ready: whether this replica can do its work now, apart from /health (it answers at
all). A probe polls it every few seconds, so each check is one cheap call with a short
timeout, and the checks run side by side.

    200 {"status": "ready", "checks": {"database": {"ok": true, "detail": "ok"}}}
    503 {"status": "not_ready",
         "checks": {"database": {"ok": false, "detail": "no answer within 2 s"}}}

A service lists its checks in `app.state.readiness` (name → check) when its lifespan has
opened what they look at; until then it is not ready.

/ready is token-free and reachable through the ingress, and its checks take a connection
from the service's small database pool (and, on the gateway, call the contract service).
So callers share one evaluation (`ReadinessCache`): those that come while one runs wait
for it, and its result answers for READY_CACHE_SECONDS after it, whatever it said. A flood
of anonymous calls then costs at most one evaluation a second and cannot take the pool
away from the kubelet's own probe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

import httpx
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

logger = logging.getLogger(__name__)

# Seconds one check may take: below the chart's probe timeout (3 s).
CHECK_SECONDS = 2.0

# Seconds one evaluation of the checks answers every /ready call for: well below the
# probe's period (5 s in the chart), so the probe still sees a change within one period.
READY_CACHE_SECONDS = 1.0

# A check returns when all is well and raises (any error, its message the reason) when not.
Check = Callable[[], Awaitable[None]]


class NotReady(Exception):
    """A check's reason, when there is no other error to tell it."""


class CheckResult(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, CheckResult]


async def _run(check: Check, seconds: float) -> CheckResult:
    try:
        async with asyncio.timeout(seconds):
            await check()
    except TimeoutError:
        return CheckResult(ok=False, detail=f"no answer within {seconds:g} s")
    except NotReady as error:
        return CheckResult(ok=False, detail=str(error))
    # Any other failure is the check's answer too (a dropped connection, a refused login,
    # ...). /ready answers anyone, and a driver's text names hosts and ports inside the
    # platform: the prober gets the error's type, the log its whole text.
    except Exception as error:  # noqa: BLE001
        logger.warning("readiness check failed: %r", error)
        return CheckResult(ok=False, detail=type(error).__name__)
    return CheckResult(ok=True, detail="ok")


async def readiness(
    checks: Mapping[str, Check] | None, seconds: float = CHECK_SECONDS
) -> Readiness:
    """Every check at once; ready when all pass. No checks yet (None): still starting."""
    if checks is None:
        starting = CheckResult(ok=False, detail="the service is starting")
        return Readiness(status="not_ready", checks={"startup": starting})
    names = list(checks)
    results = await asyncio.gather(*(_run(checks[name], seconds) for name in names))
    status: Literal["ready", "not_ready"] = (
        "ready" if all(result.ok for result in results) else "not_ready"
    )
    return Readiness(status=status, checks=dict(zip(names, results, strict=True)))


class ReadinessCache:
    """One evaluation of the checks at a time, its result reused for `seconds` after it
    ended (a failing one too, no longer). Kept in `app.state.readiness_cache`: one per
    app, used from its event loop only. `clock` is a monotonic clock in seconds."""

    def __init__(
        self, seconds: float = READY_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self._last: tuple[float, Readiness] | None = None
        self._running: asyncio.Task[Readiness] | None = None

    async def get(self, evaluate: Callable[[], Awaitable[Readiness]]) -> Readiness:
        """The last result while it is fresh, else that of the evaluation under way, else
        of a new one (`evaluate()`)."""
        if self._last is not None and self._clock() - self._last[0] < self.seconds:
            return self._last[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._evaluate(evaluate))
        # Shielded: a caller that goes away (a probe's timeout) does not cancel the
        # evaluation that the others wait for.
        return await asyncio.shield(self._running)

    async def _evaluate(self, evaluate: Callable[[], Awaitable[Readiness]]) -> Readiness:
        try:
            found = await evaluate()
            self._last = (self._clock(), found)
            return found
        finally:
            self._running = None


def database_check(pool: AsyncConnectionPool, timeout: float = CHECK_SECONDS) -> Check:
    """A real `SELECT 1` on a pooled connection (waiting at most `timeout` for one)."""

    async def check() -> None:
        async with pool.connection(timeout=timeout) as conn:
            await conn.execute("SELECT 1")

    return check


def http_check(
    http: httpx.AsyncClient, url: str, what: str, timeout: float = CHECK_SECONDS
) -> Check:
    """GET `url` (a peer's token-free /health) answers 200."""

    async def check() -> None:
        try:
            answer = await http.get(url, timeout=timeout)
        except httpx.HTTPError as error:
            logger.warning("readiness: %s cannot be reached: %r", what, error)
            raise NotReady(f"{what} cannot be reached ({type(error).__name__})") from error
        if answer.status_code != 200:
            raise NotReady(f"{what} answered {answer.status_code}")

    return check


def problem_check(problem: Callable[[], str | None]) -> Check:
    """A check over a state the service keeps: `problem()` says what is wrong, or None."""

    async def check() -> None:
        found = problem()
        if found is not None:
            raise NotReady(found)

    return check
