"""Settings of the contract service, read from CONTRACT_* environment variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from modelserve.common.settings import ServiceSettings


class ContractSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONTRACT_")

    port: int = 8201
