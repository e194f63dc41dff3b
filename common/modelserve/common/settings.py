"""The settings every service has; each service extends them with its own."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings


class ServiceSettings(BaseSettings):
    """Where a service listens and how it logs. Read from the environment.

    Subclasses set `model_config = SettingsConfigDict(env_prefix=...)` so that, for
    example, the gateway reads GATEWAY_PORT and the contract service CONTRACT_PORT.
    """

    host: str = "127.0.0.1"
    port: int
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # "json": one object per line (time, level, logger, message, service, request_id,
    # exception), for a log pipeline; "text" for people reading a terminal.
    log_format: Literal["json", "text"] = "text"
    # Seconds that requests in flight (a long stream) may take to finish after SIGTERM,
    # once the service stopped accepting new ones; then they are cut. The pod's
    # terminationGracePeriodSeconds must be longer.
    shutdown_grace_seconds: int = Field(default=30, ge=0)
    # New container objects (more made than freed) after which Python's garbage collector
    # walks its youngest generation, once the service has started (CPython's own: 700);
    # the heap startup built is frozen then (`collector`).
    gc_young_threshold: int = Field(default=20_000, ge=700, le=10_000_000)


def split(value: str) -> list[str]:
    """A comma-separated setting as its items, blanks left out."""
    return [item.strip() for item in value.split(",") if item.strip()]
