"""Settings of the gateway service, read from GATEWAY_* environment variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from modelserve.common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    port: int = 8200
