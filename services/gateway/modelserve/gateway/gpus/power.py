"""Power profiles as the gateway shows and stores them (pure): the figures it is configured
with, and GET /settings/power_profile's answer from the stored profile and the node
agents' reports of what they applied."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modelserve.common.gpu_reports import GpuReport
from modelserve.common.power_profiles import (
    DEFAULT_PROFILES,
    PROFILE_NAMES,
    PROFILES_KEY,
    CurrentProfile,
    PowerProfile,
    profiles_from_wire,
)
from modelserve.common.timestamps import rfc3339
from modelserve.gateway.settings import GatewaySettings

NO_REPORTS = "no node agent reports: power limits are not applied on any node"


def configured_profiles(settings: GatewaySettings) -> dict[str, PowerProfile]:
    """The profiles' figures from GATEWAY_POWER_* (seed 003's by default)."""
    figures = {
        "quiet": (settings.power_quiet_watts, settings.power_quiet_jobs),
        "normal": (settings.power_normal_watts, settings.power_normal_jobs),
        "max": (settings.power_max_watts, settings.power_max_jobs),
    }
    return {
        name: PowerProfile(watts, jobs, DEFAULT_PROFILES[name].description)
        for name, (watts, jobs) in figures.items()
    }


def unknown_profile_message(name: str | None) -> str:
    valid = ", ".join(PROFILE_NAMES)
    if not name:
        return f"name a profile (?profile= or {{'profile': …}}): one of {valid}"
    return f"unknown power profile {name!r}: one of {valid}"


def power_view(
    current: CurrentProfile,
    stored: Mapping[str, str] | None,
    configured: Mapping[str, PowerProfile],
    reports: Iterable[GpuReport],
    gpu_nodes: Iterable[str],
    now: float,
) -> dict[str, Any]:
    """GET /settings/power_profile's answer. The profiles are those stored with the
    current one (what the agents apply) once one was chosen; before, the configured ones."""
    profiles = profiles_from_wire(stored.get(PROFILES_KEY)) if stored else dict(configured)
    live = sorted((r for r in reports if r.live(now)), key=lambda r: r.node)
    applied = [
        {
            "node": report.node,
            "reported_at": rfc3339(report.renewed),
            **(
                report.power.to_wire()
                if report.power is not None
                else {"message": "this node agent reports no power settings"}
            ),
        }
        for report in live
    ]
    silent = sorted(set(gpu_nodes) - {report.node for report in live})
    if not live:
        note: str | None = NO_REPORTS
    elif silent:
        note = f"no node agent reports from {', '.join(silent)}: power limits not applied there"
    else:
        note = None
    return {
        "current": current.name,
        "chosen": current.chosen,
        "profiles": {name: profiles[name].to_wire() for name in PROFILE_NAMES},
        "max_concurrent_jobs": profiles[current.name].max_concurrent_jobs,
        "applied": applied,
        "applied_note": note,
    }
