"""One model's job concurrency under online traffic: additive increase, multiplicative
decrease (the way TCP shares a link), between `floor` and the cap. Pure: the caller gives
the clock and the signals.

With a floor of 0 the model's items pause altogether while they slow online requests
(on a server where even one item does, a CPU): no item runs, so no answer brings a signal;
after `pause_seconds` one item is let through as a probe, and its answer says whether to
pause again or go on.

Online latency is the gateway's ratio of recent online latency to its baseline. At or
above `latency_factor` the model's online requests are slowed: halve, at most once per
`decrease_seconds` (the next answers must show the effect of one halving before another).
Below it, while online traffic is there: add one item back for each
`busy_increase_seconds` that it stays there (a gentle probe of what the server takes
beside its online load). No online traffic (no ratio, nothing in flight): one item back
per `increase_seconds`, so a batch climbs back fast once online traffic ends. Without a
ratio (too few recent online requests for the gateway to tell), online requests in
flight count as slowed (nothing tells that job items do not slow them)."""

from __future__ import annotations

import dataclasses

from modelserve.common.online_pressure import OnlineSignal


@dataclasses.dataclass(frozen=True)
class AimdSettings:
    latency_factor: float = 1.25
    increase_seconds: float = 0.5
    decrease_seconds: float = 1.0
    busy_increase_seconds: float = 5.0
    floor: int = 1
    pause_seconds: float = 5.0


def slowed(signal: OnlineSignal, factor: float) -> bool:
    """Whether the signal says online requests are slowed."""
    if signal.latency_ratio is None:
        return signal.in_flight > 0
    return signal.latency_ratio >= factor


class Aimd:
    """The job concurrency of one model: `limit(cap)`, changed by `observe`."""

    def __init__(self, settings: AimdSettings, cap: int, now: float) -> None:
        self._settings = settings
        self._limit = max(cap, 1)
        self._calm_since = now
        self._halved: float | None = None

    def limit(self, cap: int, now: float | None = None) -> int:
        """The concurrency now, within the floor and `cap` (which may have changed
        since); paused (0) for `pause_seconds`, then one probe item (given `now`)."""
        settings = self._settings
        if (
            self._limit == 0
            and now is not None
            and (self._halved is None or now - self._halved >= settings.pause_seconds)
        ):
            self._limit = 1
            self._halved = now  # the probe's answer may pause again at once
            self._calm_since = now
        self._limit = max(min(self._limit, cap), settings.floor, 0)
        return self._limit

    def observe(self, signal: OnlineSignal, cap: int, now: float) -> int:
        """Take one signal (from an item's answer) into account: the limit after it."""
        current = self.limit(cap)
        settings = self._settings
        if slowed(signal, settings.latency_factor):
            self._calm_since = now
            recent = self._halved is not None and now - self._halved < settings.decrease_seconds
            probe = current == 1 and settings.floor == 0
            if current > settings.floor and (not recent or probe):
                self._limit = max(current // 2, settings.floor)
                self._halved = now
        elif now - self._calm_since >= (
            settings.busy_increase_seconds
            if signal.latency_ratio is not None or signal.in_flight
            else settings.increase_seconds
        ):
            self._limit = min(current + 1, max(cap, 1))
            self._calm_since = now
        return self._limit
