"""The operator's reconcile metrics, on the registry of its other metrics (one port).

Outcomes follow kopf's own meaning of a handler's end: `success`; `retry` for a
`kopf.TemporaryError` (kopf calls the handler again after its delay); `refused` for a
`kopf.PermanentError` (a spec that can never work); `error` for anything else (kopf
retries it too, but it is a bug or an outage nobody named).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import kopf
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelserve.operator.status import DEGRADED, DEPLOYING, FAILED, PENDING, READY, SLEEPING
from modelserve.operator.workqueue import Key

# A reconcile applies a handful of children: milliseconds on an idle API server, seconds
# when it is loaded or the store is slow to list a model's files.
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Every phase a ModelServe's status can have, so that each is exported from the start, at
# 0 while no ModelServe is in it.
PHASES = (PENDING, DEPLOYING, READY, DEGRADED, FAILED, SLEEPING)


class ReconcileMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reconciles = Counter(
            "modelserve_operator_reconciles",
            "Runs of the ModelServe reconcile handler (create, update of spec, resume), by "
            "outcome: success, retry, refused or error.",
            ["outcome"],
            registry=registry,
        )
        self.reconcile_seconds = Histogram(
            "modelserve_operator_reconcile_seconds",
            "How long one run of the reconcile handler took, whatever its outcome.",
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.modelserves = Gauge(
            "modelserve_operator_modelserves",
            "ModelServes this operator watches, by status.phase (one without a status yet "
            "is not counted).",
            ["phase"],
            registry=registry,
        )
        for phase in PHASES:
            self.modelserves.labels(phase)
        # The phase of each ModelServe, kept on the event loop only; the gauge is what the
        # metrics server's thread reads.
        self.phases: dict[Key, str] = {}

    @contextlib.contextmanager
    def reconciling(self) -> Iterator[None]:
        """Count one run of the reconcile handler and time it; its exception goes on."""
        started = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "success"
        except kopf.TemporaryError:
            outcome = "retry"
            raise
        except kopf.PermanentError:
            outcome = "refused"
            raise
        finally:
            self.reconciles.labels(outcome).inc()
            self.reconcile_seconds.observe(time.perf_counter() - started)

    def phase(self, key: Key, phase: str | None) -> None:
        """The phase `key`'s status shows; None: gone, or no status yet."""
        # Moved one at a time: a watch event per status write, thousands of ModelServes.
        before = self.phases.pop(key, None) if phase is None else self.phases.get(key)
        if before == phase:
            return
        if before is not None:
            self.modelserves.labels(before).dec()
        if phase is not None:
            self.phases[key] = phase
            self.modelserves.labels(phase).inc()
