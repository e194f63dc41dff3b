"""Settings of the jobs service, read from JOBS_* environment variables (the database
also from DATABASE_URL)."""

from __future__ import annotations

import socket

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from modelserve.common.objects import StoreConfig
from modelserve.common.settings import ServiceSettings
from modelserve.common.tokens import TokenSettings


class JobsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="JOBS_", populate_by_name=True)

    port: int = 8203
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    database_url: SecretStr = Field(
        default=SecretStr("postgresql://modelserve@localhost:5432/modelserve"),
        validation_alias=AliasChoices("JOBS_DATABASE_URL", "DATABASE_URL"),
    )
    database_pool_size: int = Field(default=4, ge=1)
    # Bring the schema to the newest revision at start-up (under a lock, so replicas may
    # start together). Off where a deployment migrates in a job of its own.
    migrate: bool = True

    # The platform store, where a finished job's output file goes (`jobs/<id>/output.jsonl`);
    # also the seeds' MINIO_* names. No endpoint: outputs stay in job_items only.
    store_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("JOBS_STORE_ENDPOINT", "MINIO_ENDPOINT")
    )
    store_access_key: str = Field(
        default="", validation_alias=AliasChoices("JOBS_STORE_ACCESS_KEY", "MINIO_ACCESS_KEY")
    )
    store_secret_key: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("JOBS_STORE_SECRET_KEY", "MINIO_SECRET_KEY"),
    )
    store_secure: bool = Field(
        default=False, validation_alias=AliasChoices("JOBS_STORE_SECURE", "MINIO_SECURE")
    )
    store_region: str | None = None
    store_bucket: str = Field(
        default="inference-models",
        validation_alias=AliasChoices("JOBS_STORE_BUCKET", "MINIO_BUCKET"),
    )

    # Where the `chat` executor sends its items (the gateway's OpenAI door), with a
    # service token signed from `tokens`. Unset: this replica runs no chat items.
    gateway_url: str | None = None
    gateway_timeout_seconds: float = Field(default=600.0, gt=0)

    # The OpenAI Batch API (docs/batches.md): the largest file /v1/files takes (OpenAI's
    # limit for a batch input file is 200 MB), and the most requests in one batch.
    files_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    # Any other request body (a batch, an evaluation, a generation: JSON, read whole).
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    batch_max_requests: int = Field(default=50_000, ge=1)

    # Items run at once by this replica, and at most per model (job traffic stays below
    # online traffic: the cap leaves the rest of a server's slots to online requests).
    concurrency: int = Field(default=8, ge=0)
    # At most max_per_model items of one model run at once across every replica (the
    # claim counts live leases), fewer when the power profile an admin chose says so
    # (read from the gateway every profile_seconds).
    max_per_model: int = Field(default=4, ge=1)
    profile_seconds: float = Field(default=30.0, gt=0)
    # Back-off (docs/jobs.md): per model, halve the items run at once while the gateway
    # says online latency is backoff_latency_factor times its baseline or more (at most
    # once per backoff_decrease_seconds), add one back per backoff_busy_increase_seconds
    # while online traffic is there and not slowed, per backoff_increase_seconds without it.
    backoff: bool = True
    backoff_latency_factor: float = Field(default=1.25, gt=1)
    backoff_increase_seconds: float = Field(default=0.5, gt=0)
    backoff_decrease_seconds: float = Field(default=1.0, gt=0)
    backoff_busy_increase_seconds: float = Field(default=5.0, gt=0)
    # The fewest items of a model that run while online requests are slowed: 0 pauses them
    # (one probe item per backoff_pause_seconds tells when to go on), 1 keeps one running.
    backoff_floor: int = Field(default=0, ge=0, le=1)
    backoff_pause_seconds: float = Field(default=5.0, gt=0)
    # A worker renews the leases of its items every renew_seconds; an item whose lease is
    # older than lease_seconds belongs to a worker that died and is taken again.
    lease_seconds: float = Field(default=30.0, gt=0)
    renew_seconds: float = Field(default=5.0, gt=0)
    # An item that failed in a way worth retrying (the gateway unreachable, 429, 5xx) is
    # run again until it has been tried max_attempts times; one whose lease ran out on
    # its max_attempts-th try (its worker died each time) is failed as worker_lost.
    max_attempts: int = Field(default=3, ge=1)
    # An item the gateway answered 429 or 503 (the owner's limits, a model loading) waits
    # as long as asked (Retry-After) or its doubling delay, without using up an attempt,
    # this many times at most.
    max_busy_retries: int = Field(default=20, ge=0)
    # It waits retry_seconds before its second attempt, twice as long before each next one
    # (at most retry_max_seconds), so that a gateway down for a while fails no job.
    retry_seconds: float = Field(default=5.0, ge=0)
    retry_max_seconds: float = Field(default=300.0, ge=0)
    # How often an idle worker looks for items.
    poll_seconds: float = Field(default=1.0, gt=0)
    # Names this replica in job_items.lease_owner (a pod's name, the host's).
    worker_id: str = Field(default_factory=socket.gethostname)

    def store(self) -> StoreConfig | None:
        if not self.store_endpoint:
            return None
        return StoreConfig(
            self.store_endpoint,
            self.store_access_key,
            self.store_secret_key,
            self.store_secure,
            self.store_region,
        )
