"""Settings of the download service, read from DOWNLOAD_* environment variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from modelserve.common.settings import ServiceSettings


class DownloadSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DOWNLOAD_")

    port: int = 8202
