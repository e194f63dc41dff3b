"""Times as Kubernetes writes them (RFC 3339, UTC, `Z`) and seconds since the epoch."""

from __future__ import annotations

import datetime as dt


def rfc3339(seconds: float, *, micro: bool = False) -> str:
    """`seconds` since the epoch as a date-time field takes it (a Lease's renewTime, a
    MicroTime, with microseconds)."""
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def epoch_seconds(value: object) -> float | None:
    """Seconds since the epoch of a date-time as the API server returns it (a string, or
    a datetime from the typed client); None for anything else or a string it cannot read."""
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
