"""Power profiles (seed 003's quiet, normal and max): the one place where the platform's
current profile is kept, and how to read it.

A profile sets two things: the GPU power limit that the node agents apply on GPU nodes
(`nvidia-smi -pl`), and the job concurrency of the platform (`max_concurrent_jobs`,
read by the job engine). The gateway stores the profile an admin chooses in the
ConfigMap CONFIGMAP_NAME of the platform namespace:

    data:
      profile: quiet                                   # the current profile's name
      profiles: '{"quiet": {"power_limit_w": 220, "max_concurrent_jobs": 1,
                  "description": "..."}, "normal": {...}, "max": {...}}'

`profiles` holds every profile's figures as the gateway had them when the profile was
chosen, so that a reader needs no settings of its own. Without the ConfigMap no profile
was chosen: `current_profile` answers the default one (DEFAULT_PROFILE) with
`chosen=False`, and the node agents leave the GPUs' power limits as they are.

Pure functions (no Kubernetes client here): each reader fetches the ConfigMap with the
client it has and passes its `data`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

CONFIGMAP_NAME = "modelserve-power-profile"
PROFILE_KEY = "profile"
PROFILES_KEY = "profiles"
PROFILE_NAMES = ("quiet", "normal", "max")
DEFAULT_PROFILE = "normal"


@dataclasses.dataclass(frozen=True)
class PowerProfile:
    power_limit_w: float
    max_concurrent_jobs: int
    description: str

    def to_wire(self) -> dict[str, Any]:
        limit = self.power_limit_w
        return {
            "power_limit_w": int(limit) if float(limit).is_integer() else limit,
            "max_concurrent_jobs": self.max_concurrent_jobs,
            "description": self.description,
        }

    @classmethod
    def from_wire(cls, found: Mapping[str, Any]) -> PowerProfile:
        limit = float(found["power_limit_w"])
        jobs = int(found["max_concurrent_jobs"])
        if limit <= 0 or jobs < 1:
            raise ValueError(f"a profile needs a positive limit and at least 1 job: {found}")
        return cls(limit, jobs, str(found.get("description") or ""))


# Seed 003's figures.
DEFAULT_PROFILES: Mapping[str, PowerProfile] = {
    "quiet": PowerProfile(220.0, 1, "Low power, quiet operation"),
    "normal": PowerProfile(280.0, 1, "Balanced performance"),
    "max": PowerProfile(350.0, 2, "Maximum performance"),
}


@dataclasses.dataclass(frozen=True)
class CurrentProfile:
    """The platform's profile: its name, its figures, and whether an admin chose it
    (False: no ConfigMap, or an unreadable one; the default profile's figures)."""

    name: str
    profile: PowerProfile
    chosen: bool


def profiles_from_wire(text: str | None) -> dict[str, PowerProfile]:
    """The `profiles` entry; the defaults for each profile it lacks or cannot be read."""
    profiles = dict(DEFAULT_PROFILES)
    try:
        found = json.loads(text or "{}")
    except ValueError:
        return profiles
    if not isinstance(found, dict):
        return profiles
    for name in PROFILE_NAMES:
        entry = found.get(name)
        if isinstance(entry, dict):
            try:
                profiles[name] = PowerProfile.from_wire(entry)
            except (KeyError, TypeError, ValueError):
                continue
    return profiles


def current_profile(data: Mapping[str, str] | None) -> CurrentProfile:
    """The current profile from the ConfigMap's `data` (None: there is no ConfigMap)."""
    profiles = profiles_from_wire((data or {}).get(PROFILES_KEY))
    name = (data or {}).get(PROFILE_KEY)
    if name not in PROFILE_NAMES:
        return CurrentProfile(DEFAULT_PROFILE, profiles[DEFAULT_PROFILE], chosen=False)
    return CurrentProfile(name, profiles[name], chosen=True)


def max_concurrent_jobs(data: Mapping[str, str] | None) -> int:
    """The job concurrency of the platform (what the job engine runs at once)."""
    return current_profile(data).profile.max_concurrent_jobs


def build_configmap_data(name: str, profiles: Mapping[str, PowerProfile]) -> dict[str, str]:
    """The ConfigMap's `data` for choosing `name` among `profiles`."""
    if name not in profiles:
        raise ValueError(f"unknown power profile {name!r}")
    wire = {key: profiles[key].to_wire() for key in PROFILE_NAMES if key in profiles}
    return {PROFILE_KEY: name, PROFILES_KEY: json.dumps(wire, separators=(",", ":"))}
