"""Inference accounting with the contract service: may this request run, and what it used.

Before forwarding, `decide` asks POST /decide (action `infer`, holding `max_tokens`).
After the answer, `record` puts the tokens really used on a bounded queue that a task
sends to POST /usage every `usage_flush_seconds`, settling the decision's reservation:
a request never waits for its usage to be recorded. When the queue is full, a record is
dropped and counted (the contract gives unsettled reservations back after a while).

The gateway acts as a service here: a service token of its own, naming the user it acts
for in `principal`. It fails closed: a decision that cannot be had refuses the request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import time
from typing import Any

from modelserve.common.tokens import Claims, TokenSigner
from modelserve.gateway.contracts import SERVICE_NAME, principal_of
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.upstream import UpstreamClient, UpstreamError

logger = logging.getLogger(__name__)
# Attempts to deliver one usage record while the contract service is unreachable.
DELIVERY_ATTEMPTS = 3
# Usage records sent at once during a flush.
FLUSH_CONCURRENCY = 16


class ContractUnavailable(Exception):
    """No decision could be had (the service is down or answered an error)."""


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    message: str
    team: str | None = None
    reservation: str | None = None


@dataclasses.dataclass
class UsageRecord:
    claims: Claims
    model: str
    prompt_tokens: int
    completion_tokens: int
    team: str | None = None
    reservation: str | None = None
    attempts: int = 0

    def body(self) -> bytes:
        return json.dumps(
            {
                "principal": principal_of(self.claims),
                "team": self.team,
                "model": self.model,
                "reservation": self.reservation,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            }
        ).encode()


class ServiceToken:
    """The gateway's own token, signed again when half of its life has passed."""

    def __init__(self, signer: TokenSigner, lifetime: float) -> None:
        self._signer = signer
        self._lifetime = lifetime
        self._token = ""
        self._renew_at = 0.0

    def header(self) -> str:
        now = time.monotonic()
        if now >= self._renew_at:
            self._token = self._signer.service_token(SERVICE_NAME)
            self._renew_at = now + self._lifetime / 2
        return f"Bearer {self._token}"


class Accounting:
    """The proxy's side of the contract service (`contracts` is the management routes')."""

    def __init__(
        self,
        url: str,
        http: UpstreamClient,
        token: ServiceToken,
        metrics: GatewayMetrics,
        *,
        queue_size: int,
        flush_seconds: float,
    ) -> None:
        self._url = url.rstrip("/")
        self._http = http
        self._token = token
        self._metrics = metrics
        self._queue: collections.deque[UsageRecord] = collections.deque()
        self._queue_size = queue_size
        self._flush_seconds = flush_seconds
        self._task: asyncio.Task[None] | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token.header(), "Content-Type": "application/json"}

    async def decide(
        self, claims: Claims, model: str, max_tokens: int | None, budget: int | None = None
    ) -> Decision:
        body = {
            "principal": principal_of(claims),
            "action": "infer",
            "resource": {"model": model, "max_tokens": max_tokens, "budget": budget},
        }
        try:
            status, answer = await self._http.post(
                f"{self._url}/decide", json.dumps(body).encode(), self._headers()
            )
        except UpstreamError as error:
            raise ContractUnavailable(f"the contract service is unreachable: {error}") from error
        if status != 200:
            raise ContractUnavailable(f"the contract service answered {status}: {answer[:200]!r}")
        try:
            found: dict[str, Any] = json.loads(answer)
            return Decision(
                allowed=bool(found["allowed"]),
                reason=str(found.get("reason", "")),
                message=str(found.get("message", "")),
                team=found.get("team"),
                reservation=found.get("reservation"),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ContractUnavailable("the contract service answered no decision") from error

    def record(self, record: UsageRecord) -> None:
        """Queue `record` for the next flush; never waits."""
        if len(self._queue) >= self._queue_size:
            self._metrics.usage_dropped.inc()
            return
        self._queue.append(record)

    def settle(
        self,
        claims: Claims,
        model: str,
        decision: Decision | None,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """Queue what a request used. Always, even nothing, and even for a failed or
        abandoned request: its reserved tokens come back now rather than when the
        reservation expires."""
        self.record(
            UsageRecord(
                claims=claims,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                team=decision.team if decision else None,
                reservation=decision.reservation if decision else None,
            )
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-flush")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # What is left goes once more, briefly: shutdown must not hang on the contract.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout=5)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            await self.flush()

    async def flush(self) -> None:
        batch = list(self._queue)
        self._queue.clear()
        gate = asyncio.Semaphore(FLUSH_CONCURRENCY)

        async def deliver(record: UsageRecord) -> None:
            async with gate:
                await self._deliver(record)

        await asyncio.gather(*(deliver(record) for record in batch))

    async def _deliver(self, record: UsageRecord) -> None:
        record.attempts += 1
        try:
            status, answer = await self._http.post(
                f"{self._url}/usage", record.body(), self._headers()
            )
        except UpstreamError as error:
            status, answer = 0, str(error).encode()
        if status == 200:
            return
        if (status == 0 or status >= 500) and record.attempts < DELIVERY_ATTEMPTS:
            self.record(record)  # the service may be back by the next flush
            return
        self._metrics.usage_dropped.inc()
        logger.warning(
            "usage of %s on %s not recorded (%s): %s",
            record.claims.sub,
            record.model,
            status or "unreachable",
            answer[:200].decode(errors="replace"),
        )
