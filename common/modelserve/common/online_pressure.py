"""How job traffic learns whether it slows online traffic (docs/jobs.md, "Below online
traffic"): the jobs service marks its items' requests as background work, and the
gateway answers each of them with what it measures of the model's online (unmarked)
requests. Pure: the header names, and the signal written and read.

The mark is self-declared: a request that calls itself background only gives up
priority (it is not counted as online traffic, and job workers back off for others),
so the gateway need not check who sent it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

PRIORITY_HEADER = "X-ModelServe-Priority"
BACKGROUND = "background"
IN_FLIGHT_HEADER = "X-ModelServe-Online-In-Flight"
LATENCY_RATIO_HEADER = "X-ModelServe-Online-Latency-Ratio"


@dataclasses.dataclass(frozen=True)
class OnlineSignal:
    """A model's online traffic as one gateway replica sees it now."""

    in_flight: int
    """Online requests of the model in flight at the gateway."""
    latency_ratio: float | None
    """Recent online latency (seconds per generated token) over its slowly-moving
    baseline; None when there were too few recent online requests to tell."""


def is_background(headers: Mapping[str, str]) -> bool:
    """Whether a request marked itself as background (job) work."""
    return headers.get(PRIORITY_HEADER.lower(), "").strip().lower() == BACKGROUND


def signal_headers(signal: OnlineSignal) -> dict[str, str]:
    headers = {IN_FLIGHT_HEADER: str(signal.in_flight)}
    if signal.latency_ratio is not None:
        headers[LATENCY_RATIO_HEADER] = f"{signal.latency_ratio:.3f}"
    return headers


def read_signal(headers: Mapping[str, str]) -> OnlineSignal | None:
    """The signal of an answer's headers (looked up in lower case, as httpx's and
    Starlette's headers allow); None when there is none or it cannot be read."""
    try:
        in_flight = int(headers.get(IN_FLIGHT_HEADER.lower()) or "")
    except ValueError:
        return None
    ratio: float | None = None
    raw = headers.get(LATENCY_RATIO_HEADER.lower())
    if raw is not None:
        try:
            ratio = float(raw)
        except ValueError:
            ratio = None
        if ratio is not None and (not math.isfinite(ratio) or ratio <= 0):
            ratio = None
    return OnlineSignal(max(in_flight, 0), ratio)
