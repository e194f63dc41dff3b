"""A replica's worker: it fills its slots with claimed items (no more of a model than its
pacer allows, counted across every replica by the claim), runs each with the executor of
its job's type, renews the leases of those it holds, and stops those it lost (taken by
another, or their job cancelled)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import psycopg

from modelserve.common.database import DatabaseUnavailable
from modelserve.common.objects import StoreError
from modelserve.common.request_ids import REQUEST_ID
from modelserve.jobs.executors import Executors, ItemBusy, ItemFailed, ItemRetry
from modelserve.jobs.outputs import FinishFailed, OutputWriter
from modelserve.jobs.pacing.aimd import AimdSettings
from modelserve.jobs.pacing.pacer import Pacer
from modelserve.jobs.pacing.profile import ProfileReader
from modelserve.jobs.settings import JobsSettings
from modelserve.jobs.store import Item, JobStore

logger = logging.getLogger(__name__)


def build_pacer(settings: JobsSettings) -> Pacer:
    """The pacer of JOBS_MAX_PER_MODEL and JOBS_BACKOFF_*."""
    aimd = (
        AimdSettings(
            settings.backoff_latency_factor,
            settings.backoff_increase_seconds,
            settings.backoff_decrease_seconds,
            settings.backoff_busy_increase_seconds,
            floor=settings.backoff_floor,
            pause_seconds=settings.backoff_pause_seconds,
        )
        if settings.backoff
        else None
    )
    return Pacer(settings.max_per_model, aimd)


# How long a job whose finisher failed is left before this replica tries it again.
FINISH_RETRY_SECONDS = 60.0


def retry_delay(attempts: int, first: float, most: float) -> float:
    """Seconds before the next attempt of an item tried `attempts` times: `first`,
    doubling with each attempt, at most `most`."""
    return float(min(first * 2 ** max(attempts - 1, 0), most))


def item_request_id(item: Item) -> str:
    """`job-<job id>-<index>-<attempt>`: what the gateway, contract service and model
    server log for this attempt at the item."""
    return f"job-{item.job_id}-{item.index}-{item.attempts}"


class Worker:
    def __init__(
        self,
        settings: JobsSettings,
        store: JobStore,
        executors: Executors,
        outputs: OutputWriter | None = None,
        *,
        pacer: Pacer | None = None,
        profile: ProfileReader | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._executors = executors
        self._outputs = outputs
        self._pacer = pacer or build_pacer(settings)
        self._profile = profile
        self._running: dict[asyncio.Task[None], Item] = {}

    async def run(self) -> None:
        """Runs until cancelled; items it holds then are left to their leases."""
        loops = [
            asyncio.create_task(self._fill_forever(), name="jobs-fill"),
            asyncio.create_task(self._renew_forever(), name="jobs-renew"),
        ]
        if self._profile is not None:
            loops.append(
                asyncio.create_task(
                    self._profile.follow(self._pacer, self._settings.profile_seconds),
                    name="jobs-profile",
                )
            )
        if self._outputs is not None:
            loops.append(
                asyncio.create_task(self._write_outputs_forever(self._outputs), name="jobs-out")
            )
        try:
            # The loops run forever: one that ends takes the others down with its error,
            # and the supervisor starts the worker again.
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise RuntimeError("a loop of the jobs worker returned")
        finally:
            for task in [*loops, *self._running]:
                task.cancel()
            await asyncio.gather(*loops, *self._running, return_exceptions=True)

    def _full_models(self) -> list[str]:
        """Models this replica alone runs as many items of as they may have: no claim
        needs to look at them."""
        counts = Counter(item.model or "" for item in self._running.values())
        return [model for model, n in counts.items() if n >= self._pacer.limit(model)]

    async def _fill_forever(self) -> None:
        settings = self._settings
        types = list(self._executors)
        while True:
            claimed = False
            if types and len(self._running) < settings.concurrency:
                try:
                    item = await self._store.claim(
                        settings.worker_id,
                        lease=settings.lease_seconds,
                        types=types,
                        full_models=self._full_models(),
                        caps=self._pacer.limits(),
                        default_cap=self._pacer.cap(),
                        max_attempts=settings.max_attempts,
                    )
                except DatabaseUnavailable as error:
                    logger.warning("claiming items: %s", error)
                    item = None
                if item is not None:
                    task = asyncio.create_task(self._run_item(item))
                    self._running[task] = item
                    task.add_done_callback(self._forget)
                    claimed = True
            if claimed:
                continue
            # Full, or nothing to claim: wait for a slot to free or the poll interval.
            if self._running:
                await asyncio.wait(
                    set(self._running),
                    timeout=settings.poll_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            else:
                await asyncio.sleep(settings.poll_seconds)

    def _forget(self, task: asyncio.Task[None]) -> None:
        item = self._running.pop(task, None)
        if task.cancelled() or item is None:
            return
        error = task.exception()
        if error is not None:
            # Its lease runs out and another attempt takes it: nothing is lost.
            logger.error("item %s/%d: %s", item.job_id, item.index, error, exc_info=error)

    async def _run_item(self, item: Item) -> None:
        # The item's calls to the gateway (and the log lines written for it) carry an id
        # that names it: each item runs in a task of its own, whose context this is.
        REQUEST_ID.set(item_request_id(item))
        executor = self._executors[item.type]
        settings = self._settings
        try:
            output = await executor(item)
        except ItemRetry as error:
            delay = retry_delay(item.attempts, settings.retry_seconds, settings.retry_max_seconds)
            busy = isinstance(error, ItemBusy)
            if isinstance(error, ItemBusy) and error.retry_after is not None:
                delay = max(delay, error.retry_after)
            await self._store.release(
                item,
                error.as_error(),
                max_attempts=settings.max_attempts,
                delay=delay,
                busy=busy,
                max_busy=settings.max_busy_retries,
            )
            return
        except ItemFailed as error:
            await self._store.fail(item, error.as_error())
            return
        try:
            recorded = await self._store.complete(item, output)
        except psycopg.DataError as error:
            # What PostgreSQL cannot keep (a NUL character in a model's answer): the item
            # fails with the reason, rather than being sent again.
            failure = ItemFailed("unstorable_output", f"the answer cannot be recorded: {error}")
            await self._store.fail(item, failure.as_error())
            return
        if not recorded:
            logger.info("item %s/%d was no longer ours: output dropped", item.job_id, item.index)

    async def _renew_forever(self) -> None:
        settings = self._settings
        while True:
            await asyncio.sleep(settings.renew_seconds)
            held = dict(self._running)
            if not held:
                continue
            try:
                kept = await self._store.renew(
                    settings.worker_id, list(held.values()), lease=settings.lease_seconds
                )
            except DatabaseUnavailable as error:
                logger.warning("renewing leases: %s", error)
                continue
            lost = []
            for task, item in held.items():
                if (item.job_id, item.index) not in kept and not task.done():
                    logger.info(
                        "item %s/%d lost (cancelled or taken): stopped", item.job_id, item.index
                    )
                    task.cancel()
                    lost.append(item)
            try:
                # Those of a cancelled job are given up at once (the job's files wait for
                # no lease); those another worker took are left to it.
                await self._store.abandon(settings.worker_id, lost)
            except DatabaseUnavailable as error:
                logger.warning("giving up stopped items: %s", error)

    async def _write_outputs_forever(self, outputs: OutputWriter) -> None:
        # Jobs whose finishing failed here, left to other replicas (or a later try) until
        # the monotonic time given: one job that cannot be finished holds up no other.
        failing: dict[str, float] = {}
        while True:
            now = time.monotonic()
            failing = {job: until for job, until in failing.items() if until > now}
            try:
                written = await outputs.write_next(exclude=list(failing))
            except (DatabaseUnavailable, StoreError) as error:
                logger.warning("writing a job's output file: %s", error)
                written = None
            except FinishFailed as error:
                # A finisher's own error (a bug, or data it cannot handle): logged whole,
                # tried again later; the items it would have written stay recorded.
                logger.error("finishing job %s: %s", error.job_id, error, exc_info=error.__cause__)
                failing[error.job_id] = now + FINISH_RETRY_SECONDS
                written = None
            if written is None:
                await asyncio.sleep(self._settings.poll_seconds)
