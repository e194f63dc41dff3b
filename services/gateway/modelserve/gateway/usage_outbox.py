"""The usage outbox: what each inference used, kept in PostgreSQL until the contract
service has it, so that neither a contract outage nor a crash of the gateway loses it.

- `add` (in the request path, never waiting) queues a record; the writer puts what is
  queued into the table `usage_outbox` with one INSERT per batch, within milliseconds.
  It writes the rows already claimed for this replica (as the sender would claim them)
  and hands them to its sender in memory, up to `queue_size` of them waiting: a row then
  costs PostgreSQL an INSERT and a DELETE, not an UPDATE besides.
- The sender sends what the writer handed it and, beside it, claims due rows (`FOR
  UPDATE SKIP LOCKED`, then a lease: every replica of the gateway sends from the same
  table, none the same row at once): rows whose delivery failed, and those of a replica
  that died. It sends them to the contract in one batch (POST /usage/batch, each record
  under its id), deletes the ones the contract has, and moves the others' next try on by
  an exponential backoff. A row is never dropped; the contract counts an id once, so a
  row sent again (its answer lost, its lease run out) is counted once.
- Both loops run supervised: a failure is logged and the loop starts again.

What only memory holds is a record between `add` and its INSERT (milliseconds, or while
the database is down: up to `queue_size` records, then they are dropped and counted).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from modelserve.common.database import DatabaseUnavailable, connection, open_pool
from modelserve.common.supervision import start_supervised
from modelserve.gateway.metrics import GatewayMetrics

logger = logging.getLogger(__name__)
# Records put in the outbox with one INSERT.
WRITE_BATCH = 500
# How long a shutting-down gateway waits to write what is still queued.
CLOSE_SECONDS = 5.0
# Records dropped (the queue full) per line in the log.
DROPS_PER_LOG = 1000

# Send records (each one's JSON) to the contract service: one (status, answer) per
# record, in order; status 0 when it could not be reached.
SendBatch = Callable[[Sequence[bytes]], Awaitable[list[tuple[int, bytes]]]]

# The records as one parameter, a JSON array of {"id", "record"}: joined from the records'
# JSON as it is (two array parameters had psycopg escape every quote of every record, with
# a regex: 6% of a policy-on gateway's CPU at 1,000 requests a second). Rows claimed for
# this replica's sender are written as `_CLAIM` leaves a claimed row (attempts 1, the lease
# ahead); rows due for any replica with attempts 0 and no wait.
_INSERT = (
    "INSERT INTO usage_outbox (id, record, attempts, next_attempt_at)"
    " SELECT (e->>'id')::uuid, e->'record', %s, now() + make_interval(secs => %s)"
    " FROM jsonb_array_elements(%s::jsonb) AS e"
    " ON CONFLICT (id) DO NOTHING"
)
_CLAIM = (
    "UPDATE usage_outbox SET attempts = attempts + 1,"
    " next_attempt_at = now() + make_interval(secs => %s)"
    " WHERE id IN (SELECT id FROM usage_outbox WHERE next_attempt_at <= now()"
    " ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)"
    " RETURNING id, record::text, attempts"
)
_DELETE = "DELETE FROM usage_outbox WHERE id = ANY(%s::uuid[])"
# Rows claimed at their INSERT and never sent (the gateway stopping): due again, now.
_RELEASE = (
    "UPDATE usage_outbox SET attempts = greatest(attempts - 1, 0), next_attempt_at = now()"
    " WHERE id = ANY(%s::uuid[])"
)
_RETRY = (
    "UPDATE usage_outbox AS o SET next_attempt_at = now() + make_interval(secs => f.delay),"
    " last_error = f.error"
    " FROM unnest(%s::uuid[], %s::float8[], %s::text[]) AS f(id, delay, error)"
    " WHERE o.id = f.id"
)


def retry_delay(attempts: int, first: float, cap: float, jitter: float) -> float:
    """The wait before the next try of a record that failed `attempts` times (1 or more):
    `first` doubled each time, at most `cap`; `jitter` (0 to 1) takes up to a tenth off,
    so that records that failed together do not all come back at once."""
    delay: float = min(cap, first * 2.0 ** min(max(0, attempts - 1), 60))
    return delay * (1 - 0.1 * jitter)


def failure(status: int, answer: bytes) -> str:
    """A failed delivery, for the log and the row's `last_error`."""
    text = answer[:200].decode(errors="replace")
    return f"the contract service answered {status}: {text}" if status else text


@dataclasses.dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    record: bytes
    attempts: int


@dataclasses.dataclass(frozen=True)
class OutboxSettings:
    flush_seconds: float
    retry_seconds: float
    retry_max_seconds: float
    batch_size: int
    lease_seconds: float
    queue_size: int


class UsageOutbox:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        send: SendBatch,
        metrics: GatewayMetrics,
        settings: OutboxSettings,
    ) -> None:
        self._pool = pool
        self._send = send
        self._metrics = metrics
        self._settings = settings
        # Each queued record: its id and its JSON.
        self._pending: list[tuple[uuid.UUID, str]] = []
        # Rows written claimed for this replica, for its sender, oldest first.
        self._written: collections.deque[Claimed] = collections.deque()
        self._queued = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._dropped = 0

    @classmethod
    async def open(
        cls, url: str, send: SendBatch, metrics: GatewayMetrics, settings: OutboxSettings
    ) -> UsageOutbox:
        """Its own two connections (the writer's and the sender's); the loops started."""
        outbox = cls(await open_pool(url, size=2, wait=5.0), send, metrics, settings)
        outbox._tasks = [
            start_supervised("usage-outbox-writer", outbox._write_loop),
            start_supervised("usage-outbox-sender", outbox._send_loop),
        ]
        return outbox

    async def close(self) -> None:
        """Stop sending (what is in the table stays there for the next start or another
        replica, due at once), write what is still queued, briefly, and close the pool."""
        sender, writer = self._tasks or (None, None)
        for task in (sender, writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            await asyncio.wait_for(self._write_and_release(), timeout=CLOSE_SECONDS)
        except (TimeoutError, DatabaseUnavailable, psycopg.Error) as error:
            logger.error(
                "%d usage records not written to the outbox at shutdown: %s",
                len(self._pending),
                error,
            )
            self._metrics.usage_dropped.inc(len(self._pending))
        await self._pool.close()

    async def _write_and_release(self) -> None:
        await self.write_pending(hand_over=False)
        if self._written:  # claimed for a sender that stopped: due for whoever sends next
            ids = [row.id for row in self._written]
            async with connection(self._pool) as conn:
                await conn.execute(_RELEASE, [ids])
            self._written.clear()

    # --- the request path ---------------------------------------------------------------

    def add(self, usage_id: uuid.UUID, record: dict[str, Any]) -> None:
        """Queue `record` for the outbox; never waits."""
        if len(self._pending) >= self._settings.queue_size:
            self._metrics.usage_dropped.inc()
            self._dropped += 1
            if self._dropped % DROPS_PER_LOG == 1:  # the first, then one line per thousand
                logger.error(
                    "usage of %s dropped (%d so far): %d records wait for the outbox (is the"
                    " database down?)",
                    record.get("principal", {}).get("subject"),
                    self._dropped,
                    len(self._pending),
                )
            return
        self._pending.append((usage_id, json.dumps(record)))
        self._queued.set()

    # --- the writer ---------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            if not self._pending:  # after a restart, what failed to be written waits
                await self._queued.wait()
            self._queued.clear()
            try:
                await self.write_pending()
            except (DatabaseUnavailable, psycopg.OperationalError) as error:
                logger.warning(
                    "%d usage records wait for the outbox: %s", len(self._pending), error
                )
                await asyncio.sleep(self._settings.retry_seconds)
                self._queued.set()

    async def write_pending(self, *, hand_over: bool = True) -> None:
        """Everything queued into the table, a batch per INSERT; what fails stays queued.
        A batch goes to this replica's sender, claimed as it is written, while fewer than
        `queue_size` rows wait there (and `hand_over`); otherwise it is written due, for
        the claims of any replica."""
        while self._pending:
            batch = self._pending[:WRITE_BATCH]
            array = "[" + ",".join(f'{{"id":"{i}","record":{r}}}' for i, r in batch) + "]"
            claimed = hand_over and len(self._written) + len(batch) <= self._settings.queue_size
            attempts, wait = (1, self._settings.lease_seconds) if claimed else (0, 0.0)
            async with connection(self._pool) as conn:
                await conn.execute(_INSERT, [attempts, wait, array])
            if claimed:
                self._written.extend(Claimed(i, r.encode(), 1) for i, r in batch)
            del self._pending[: len(batch)]

    # --- the sender ---------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            try:
                claimed = await self.send_due()
            except (DatabaseUnavailable, psycopg.OperationalError) as error:
                logger.warning("usage outbox unreadable, trying again: %s", error)
                claimed = 0
            if claimed < self._settings.batch_size:
                await asyncio.sleep(self._settings.flush_seconds)

    async def send_due(self) -> int:
        """One round: the rows the writer handed over and, up to the batch size, due rows
        claimed from the table; send them, settle each. How many were sent."""
        size = self._settings.batch_size
        written = self._written
        rows = [written.popleft() for _ in range(min(size, len(written)))]
        if len(rows) < size:
            try:
                rows += await self._claim(size - len(rows))
            except BaseException:
                written.extendleft(reversed(rows))  # sent on the next round
                raise
        if not rows:
            return 0
        answers = await self._send([row.record for row in rows])
        if len(answers) != len(rows):  # a sender's bug: try them all again later
            answers = [(0, b"the sender answered for another number of records")] * len(rows)
        await self._settle(rows, answers)
        return len(rows)

    async def _claim(self, limit: int) -> list[Claimed]:
        async with connection(self._pool) as conn:
            cur = await conn.execute(_CLAIM, [self._settings.lease_seconds, limit])
            found = await cur.fetchall()
        return [Claimed(row[0], row[1].encode(), row[2]) for row in found]

    async def _settle(self, rows: Sequence[Claimed], answers: Sequence[tuple[int, bytes]]) -> None:
        settings = self._settings
        sent = [row.id for row, (status, _) in zip(rows, answers, strict=True) if status == 200]
        failed = [
            (row, answer) for row, answer in zip(rows, answers, strict=True) if answer[0] != 200
        ]
        delays = [
            retry_delay(
                row.attempts, settings.retry_seconds, settings.retry_max_seconds, random.random()
            )
            for row, _ in failed
        ]
        errors = [failure(status, answer) for _, (status, answer) in failed]
        async with connection(self._pool) as conn, conn.transaction():
            if sent:
                await conn.execute(_DELETE, [sent])
            if failed:
                await conn.execute(_RETRY, [[row.id for row, _ in failed], delays, errors])
        if failed:
            self._metrics.usage_retries.inc(len(failed))
            logger.warning(
                "%d usage records not delivered to the contract service (%s); next try in"
                " %.1f s or more",
                len(failed),
                errors[0],
                min(delays),
            )
