"""A replica's per-model concurrency: the smallest of the engine's own cap
(JOBS_MAX_PER_MODEL), the power profile's `max_concurrent_jobs` (once an admin chose a
profile) and, with back-off on, the model's AIMD limit. The claim enforces it across
every replica (`JobStore.claim(caps=…)`); a Prometheus gauge shows it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge

from modelserve.common.online_pressure import OnlineSignal
from modelserve.jobs.pacing.aimd import Aimd, AimdSettings

logger = logging.getLogger(__name__)


class Pacer:
    def __init__(
        self,
        own_cap: int,
        aimd: AimdSettings | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._own = own_cap
        self._aimd = aimd
        self._clock = clock
        self._profile: int | None = None
        self._models: dict[str, Aimd] = {}
        self.registry = CollectorRegistry()
        self._gauge = Gauge(
            "modelserve_jobs_model_concurrency",
            "Items of a model this replica lets run at once across the cluster "
            "(the cap, the power profile's and the back-off's limit)",
            ["model"],
            registry=self.registry,
        )
        self._cap_gauge = Gauge(
            "modelserve_jobs_cap",
            "The engine's per-model cap: JOBS_MAX_PER_MODEL or the power profile's, the smaller",
            registry=self.registry,
        )
        self._cap_gauge.set(self.cap())

    def cap(self) -> int:
        """The cap before back-off: the engine's own, or the power profile's if smaller."""
        if self._profile is None:
            return self._own
        return min(self._own, self._profile)

    def set_profile(self, concurrency: int | None) -> None:
        """The power profile's `max_concurrent_jobs` (None: no profile chosen, or no
        cluster: the engine's own cap holds)."""
        if concurrency != self._profile:
            logger.info("power profile's job concurrency: %s", concurrency)
        self._profile = concurrency
        self._cap_gauge.set(self.cap())

    def limit(self, model: str) -> int:
        """How many items of `model` may run at once now."""
        cap = self.cap()
        found = self._models.get(model)
        limit = found.limit(cap, self._clock()) if found is not None else cap
        self._gauge.labels(model).set(limit)
        return limit

    def limits(self) -> dict[str, int]:
        """The limits of the models that had signals (the others have `cap()`)."""
        return {model: self.limit(model) for model in self._models}

    def observe(self, model: str, signal: OnlineSignal) -> None:
        """The online signal of an item's answer (the gateway's, per model)."""
        if self._aimd is None or not model:
            return
        cap, now = self.cap(), self._clock()
        found = self._models.get(model)
        if found is None:
            found = self._models[model] = Aimd(self._aimd, cap, now)
        before = found.limit(cap)
        after = found.observe(signal, cap, now)
        if after != before:
            logger.info(
                "%s: %d -> %d items at once (online in flight %d, latency ratio %s)",
                model,
                before,
                after,
                signal.in_flight,
                signal.latency_ratio,
            )
        self._gauge.labels(model).set(after)
