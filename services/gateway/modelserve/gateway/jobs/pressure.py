"""The online-latency signal that job workers pace themselves by (docs/jobs.md, "Below
online traffic").

Per model, this gateway replica counts its online requests in flight (those not marked
as background work) and measures their latency as seconds per generated token (the
whole request over its completion tokens, so that long and short answers compare): a
fast average of recent requests against a slowly-moving baseline, the lower envelope of
the same samples (it follows a faster sample at once, a slower one only a little at a
time). Their ratio is what a job worker compares with its factor: while job items slow
online requests it rises; once they stop, fast samples bring it back to about 1.

Background requests (job items) are answered with the model's signal in headers
(`modelserve.common.online_pressure`). The clock is given, so that this is tested
without waiting."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from modelserve.common.online_pressure import OnlineSignal

# How much a new sample moves the recent latency (fast), and the baseline towards a
# slower sample (slow; towards a faster one it moves by BASELINE_DOWN).
RECENT_WEIGHT = 0.3
BASELINE_UP = 0.01
BASELINE_DOWN = 0.5
# A ratio is told only after this many online samples, and only while online traffic is
# there: the last sample is at most FRESH_SECONDS old, or IN_FLIGHT_SECONDS while an
# online request is in flight. Once online traffic stops, job workers are told so within
# FRESH_SECONDS (and climb back), not held down by the last slow sample.
MIN_SAMPLES = 3
FRESH_SECONDS = 2.0
IN_FLIGHT_SECONDS = 60.0


@dataclasses.dataclass
class _Model:
    in_flight: int = 0
    samples: int = 0
    recent: float = 0.0
    baseline: float = 0.0
    last_sample: float = 0.0


class OnlinePressure:
    """Online requests in flight and their latency ratio, per model."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._models: dict[str, _Model] = {}

    def started(self, model: str) -> None:
        """An online request of `model` went upstream."""
        self._models.setdefault(model, _Model()).in_flight += 1

    def finished(
        self, model: str, seconds: float | None, completion_tokens: int | None = None
    ) -> None:
        """It ended after `seconds` (None: it failed, no latency sample), having
        generated `completion_tokens` (None: not known, counted as one)."""
        state = self._models.setdefault(model, _Model())
        state.in_flight = max(state.in_flight - 1, 0)
        if seconds is None:
            return
        sample = seconds / max(completion_tokens or 1, 1)
        if state.samples == 0:
            state.recent = state.baseline = sample
        else:
            state.recent += RECENT_WEIGHT * (sample - state.recent)
            weight = BASELINE_DOWN if sample < state.baseline else BASELINE_UP
            state.baseline += weight * (sample - state.baseline)
        state.samples += 1
        state.last_sample = self._clock()

    def signal(self, model: str) -> OnlineSignal:
        state = self._models.get(model)
        if state is None:
            return OnlineSignal(0, None)
        ratio = None
        age = self._clock() - state.last_sample
        fresh = age <= (IN_FLIGHT_SECONDS if state.in_flight else FRESH_SECONDS)
        if state.samples >= MIN_SAMPLES and fresh and state.baseline > 0:
            ratio = state.recent / state.baseline
        return OnlineSignal(state.in_flight, ratio)
