"""The settings every service has; each service extends them with its own."""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings


class ServiceSettings(BaseSettings):
    """Where a service listens and how it logs. Read from the environment.

    Subclasses set `model_config = SettingsConfigDict(env_prefix=...)` so that, for
    example, the gateway reads GATEWAY_PORT and the contract service CONTRACT_PORT.
    """

    host: str = "127.0.0.1"
    port: int
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"


def split(value: str) -> list[str]:
    """A comma-separated setting as its items, blanks left out."""
    return [item.strip() for item in value.split(",") if item.strip()]
