"""Settings of the download service, read from DOWNLOAD_* environment variables.

The platform store also answers to the seeds' names (MINIO_ENDPOINT, MINIO_BUCKET,
MINIO_ACCESS_KEY, MINIO_SECRET_KEY, MINIO_SECURE) and the database to DATABASE_URL.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from modelserve.common.objects import MIN_PART_SIZE, StoreConfig
from modelserve.common.settings import ServiceSettings, split
from modelserve.common.tokens import TokenSettings


def _alias(name: str, seed: str | None = None) -> AliasChoices:
    return AliasChoices(f"DOWNLOAD_{name}", *([seed] if seed else []))


class DownloadSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DOWNLOAD_", populate_by_name=True)

    port: int = 8202
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    # With a value, GET /metrics needs `Authorization: Bearer <it>`; without, it is open.
    metrics_token: SecretStr | None = None
    database_url: SecretStr = Field(
        default=SecretStr("postgresql://modelserve@localhost:5432/modelserve"),
        validation_alias=_alias("DATABASE_URL", "DATABASE_URL"),
    )
    database_pool_size: int = Field(default=4, ge=1)
    # Bring the schema to the newest revision at start-up (under a lock, so replicas may
    # start together). Off where a deployment migrates in a job of its own.
    migrate: bool = True

    # The upstream ("quant") store models come from. Only the buckets listed may be named
    # in a request; the first is where POST /download/{model_id} looks, under <model_id>/.
    upstream_endpoint: str = "localhost:9000"
    upstream_access_key: str = ""
    upstream_secret_key: SecretStr = SecretStr("")
    upstream_secure: bool = False
    upstream_region: str | None = None
    upstream_buckets: str = "llm-models"

    # The platform store that model servers load from.
    platform_endpoint: str = Field(
        default="localhost:9000", validation_alias=_alias("PLATFORM_ENDPOINT", "MINIO_ENDPOINT")
    )
    platform_access_key: str = Field(
        default="", validation_alias=_alias("PLATFORM_ACCESS_KEY", "MINIO_ACCESS_KEY")
    )
    platform_secret_key: SecretStr = Field(
        default=SecretStr(""), validation_alias=_alias("PLATFORM_SECRET_KEY", "MINIO_SECRET_KEY")
    )
    platform_secure: bool = Field(
        default=False, validation_alias=_alias("PLATFORM_SECURE", "MINIO_SECURE")
    )
    platform_region: str | None = None
    platform_bucket: str = Field(
        default="inference-models", validation_alias=_alias("PLATFORM_BUCKET", "MINIO_BUCKET")
    )
    # The platform store as clients reach it: upload URLs (POST /models/uploads) are signed
    # for it. Default: the platform endpoint (and its scheme).
    platform_public_endpoint: str | None = None
    platform_public_secure: bool | None = None
    # How long an upload's presigned URLs are good for (GET /models/uploads/{id} signs
    # them again).
    upload_url_seconds: int = Field(default=6 * 3600, ge=60, le=7 * 24 * 3600)
    # How many uploads a user (not an admin or a service) may have open at once.
    max_open_uploads: int = Field(default=16, ge=1)

    # Users who are not admins may download when their contract allows it; without a
    # contract service only admins and platform services may.
    contract_url: str | None = Field(default=None, validation_alias=_alias("CONTRACT_URL"))

    # Transfers: jobs run at once per replica, parts in flight per job and their size.
    # Memory is about jobs x parallel_parts x part_size (bench/download_throughput.py).
    jobs: int = Field(default=2, ge=1)
    parallel_parts: int = Field(default=4, ge=1, le=64)
    part_size: int = Field(default=16 << 20, ge=MIN_PART_SIZE)
    # The first bytes of a GGUF file kept to read its header (vocabularies make it long).
    gguf_header_bytes: int = Field(default=64 << 20, ge=1 << 20)
    # Where attempts keep those bytes, a directory each (`workdirs`); what killed attempts
    # left there is removed at start.
    work_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "modelserve-download"
    )
    # A worker renews its hold on a job every progress_seconds; a job whose hold is older
    # than lease_seconds belongs to a worker that died and is taken over.
    progress_seconds: float = Field(default=1.0, gt=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    # An attempt broken off because a store could not be reached (restarting, a network
    # blip) is an outage, not a verdict on the model: the job is tried again once its
    # lease runs out, until it has had this many attempts; then it fails.
    store_outage_attempts: int = Field(default=20, ge=1)
    # Names this replica in the jobs table. Stable across restarts (a pod's name, the
    # host's), so that a restarted service takes its own jobs back without waiting.
    worker_id: str = Field(default_factory=socket.gethostname)
    # How often idle workers look for jobs besides being told by PostgreSQL.
    poll_seconds: float = Field(default=5.0, gt=0)
    # A background loop (a job worker, the job listener, the tag back-fill) that fails is
    # logged and started again after restart_seconds, doubling with each failure in a row
    # up to restart_max_seconds.
    restart_seconds: float = Field(default=1.0, gt=0)
    restart_max_seconds: float = Field(default=60.0, gt=0)

    def upstream(self) -> StoreConfig:
        return StoreConfig(
            self.upstream_endpoint,
            self.upstream_access_key,
            self.upstream_secret_key,
            self.upstream_secure,
            self.upstream_region,
        )

    def platform(self) -> StoreConfig:
        return StoreConfig(
            self.platform_endpoint,
            self.platform_access_key,
            self.platform_secret_key,
            self.platform_secure,
            self.platform_region,
        )

    def platform_public(self) -> StoreConfig:
        """The platform store at the endpoint clients reach, for signing upload URLs."""
        secure = self.platform_public_secure
        return StoreConfig(
            self.platform_public_endpoint or self.platform_endpoint,
            self.platform_access_key,
            self.platform_secret_key,
            self.platform_secure if secure is None else secure,
            self.platform_region,
        )

    def allowed_buckets(self) -> list[str]:
        return split(self.upstream_buckets)

    @field_validator("upstream_buckets")
    @classmethod
    def _some_bucket(cls, value: str) -> str:
        if not split(value):
            raise ValueError("name at least one upstream bucket (or *)")
        return value
