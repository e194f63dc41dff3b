"""Settings of the operator, read from OPERATOR_* environment variables."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPERATOR_")

    # Empty: watch every namespace; otherwise a comma-separated list.
    namespaces: str = ""
    health_host: str = "127.0.0.1"
    health_port: int = 8210

    def namespace_list(self) -> list[str]:
        return [name.strip() for name in self.namespaces.split(",") if name.strip()]
