"""GET /ready's evaluations are shared: concurrent callers wait for one, and its result
answers for READY_CACHE_SECONDS after it, a failing one no longer. (Unit tests of the one
pure behaviour, on a tiny app built like every service and on `ReadinessCache` itself,
with a clock the test moves; tests/common/test_readiness.py checks the real checks.)"""

from __future__ import annotations

import asyncio

import httpx

from modelserve.common.readiness import (
    READY_CACHE_SECONDS,
    CheckResult,
    Readiness,
    ReadinessCache,
)
from modelserve.common.service import create_service_app
from modelserve.common.settings import ServiceSettings

CALLERS = 50


class TinySettings(ServiceSettings):
    port: int = 1


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_ready_calls_run_the_checks_once_until_the_window_ends() -> None:
    app = create_service_app("tiny", TinySettings())
    assert app.state.readiness_cache.seconds == READY_CACHE_SECONDS == 1.0
    clock = Clock()
    app.state.readiness_cache = ReadinessCache(clock=clock)
    runs: list[int] = []

    async def counted() -> None:
        runs.append(1)
        await asyncio.sleep(0.05)  # in flight while the other callers come

    app.state.readiness = {"counted": counted}

    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tiny") as client:
            answers = await asyncio.gather(*(client.get("/ready") for _ in range(CALLERS)))
            assert len(runs) == 1
            clock.now += READY_CACHE_SECONDS
            return list(answers), await client.get("/ready")

    answers, later = asyncio.run(scenario())
    assert [answer.status_code for answer in answers] == [200] * CALLERS
    assert {answer.text for answer in answers} == {answers[0].text}
    assert answers[0].json()["checks"] == {"counted": {"ok": True, "detail": "ok"}}
    # The window over, the next call runs the checks again.
    assert (later.status_code, len(runs)) == (200, 2)


def test_callers_of_an_evaluation_under_way_wait_for_it() -> None:
    """No reuse at all (a 0 s window): still one evaluation for all who came during it."""
    cache = ReadinessCache(seconds=0, clock=Clock())
    release = asyncio.Event()
    runs: list[int] = []

    async def evaluate() -> Readiness:
        runs.append(1)
        await release.wait()
        return Readiness(status="ready", checks={})

    async def scenario() -> list[Readiness]:
        callers = [asyncio.ensure_future(cache.get(evaluate)) for _ in range(CALLERS)]
        await asyncio.sleep(0)  # each caller has asked (the tasks run in order)
        await asyncio.sleep(0)  # and the evaluation has started
        assert len(runs) == 1
        release.set()
        found = await asyncio.gather(*callers)
        # Over: a 0 s window reuses nothing.
        await cache.get(evaluate)
        return found

    found = asyncio.run(scenario())
    assert [answer.status for answer in found] == ["ready"] * CALLERS
    assert len(runs) == 2


def test_a_failing_result_is_kept_for_the_window_and_no_longer() -> None:
    clock = Clock()
    cache = ReadinessCache(clock=clock)
    outcomes = iter([False, True])
    runs: list[int] = []

    async def evaluate() -> Readiness:
        runs.append(1)
        ok = next(outcomes)
        result = CheckResult(ok=ok, detail="ok" if ok else "down")
        return Readiness(status="ready" if ok else "not_ready", checks={"database": result})

    async def scenario() -> list[str]:
        start = clock.now
        seen: list[str] = [(await cache.get(evaluate)).status]
        clock.now = start + READY_CACHE_SECONDS / 2
        seen.append((await cache.get(evaluate)).status)
        clock.now = start + READY_CACHE_SECONDS
        seen.append((await cache.get(evaluate)).status)
        return seen

    assert asyncio.run(scenario()) == ["not_ready", "not_ready", "ready"]
    assert len(runs) == 2


def test_a_caller_that_goes_away_does_not_cancel_the_others_evaluation() -> None:
    cache = ReadinessCache(clock=Clock())
    release = asyncio.Event()

    async def evaluate() -> Readiness:
        await release.wait()
        return Readiness(status="ready", checks={})

    async def scenario() -> str:
        impatient = asyncio.ensure_future(cache.get(evaluate))  # starts the evaluation
        patient = asyncio.ensure_future(cache.get(evaluate))  # joins it
        await asyncio.sleep(0)
        impatient.cancel()  # a probe that timed out
        await asyncio.sleep(0)
        release.set()
        return (await patient).status

    assert asyncio.run(scenario()) == "ready"
