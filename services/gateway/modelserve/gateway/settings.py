"""Settings of the gateway service, read from GATEWAY_* environment variables.

The database also answers to the seeds' DATABASE_URL.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from modelserve.common.settings import ServiceSettings
from modelserve.common.tokens import TokenSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", populate_by_name=True)

    port: int = 8200
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    database_url: SecretStr = Field(
        default=SecretStr("postgresql://modelserve@localhost:5432/modelserve"),
        validation_alias=AliasChoices("GATEWAY_DATABASE_URL", "DATABASE_URL"),
    )
    database_pool_size: int = Field(default=4, ge=1)

    # The first admin, created at start-up when no user of that name exists. Without a
    # password there is none, except in development mode (MODELSERVE_DEVELOPMENT), where
    # it is admin/admin.
    admin_username: str = "admin"
    admin_password: SecretStr | None = None

    # The other services. Without a contract service nothing is limited (and no usage is
    # recorded); without a download service /models lists nothing.
    contract_url: str | None = None
    download_url: str | None = None

    # Kubernetes: where servers (ModelServes) are created unless a request names a
    # namespace; credentials from $KUBECONFIG (or `kubeconfig`), else in-cluster.
    namespace: str = "default"
    kubeconfig: Path | None = None
    # Watch ModelServes in every namespace (needs cluster-wide list/watch) or only these.
    watch_namespaces: str = "*"

    # The proxy: connections kept to model servers, and how long to wait for them.
    upstream_connections: int = Field(default=256, ge=1)
    upstream_connect_timeout: float = Field(default=5.0, gt=0)
    # Between two bytes of a response (a long generation streams; a silent one is stuck).
    upstream_read_timeout: float = Field(default=300.0, gt=0)
    # Request bodies over this are refused with 413 before they reach a model server.
    max_body_bytes: int = Field(default=8 << 20, ge=1024)
    # Token usage is sent to the contract service in batches, this often.
    usage_flush_seconds: float = Field(default=1.0, gt=0)
