"""Settings of the operator, read from OPERATOR_* environment variables.

Images, ports and the other defaults of the servers the operator deploys live here,
so that a cluster can pin its own images without a change of code.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPERATOR_")

    # Empty: watch every namespace; otherwise a comma-separated list.
    namespaces: str = ""
    health_host: str = "127.0.0.1"
    health_port: int = 8210
    # Connections of the operator's own API client: at most this many applies and status
    # writes are in flight at once.
    api_connections: int = Field(default=32, ge=1)
    # Tasks that compute and write statuses (each waits on one API call at a time).
    status_writers: int = Field(default=16, ge=1)
    # Connections of kopf's own client (watches, its patches, Events); at least one per
    # watched kind (about ten) plus room for writes.
    watch_connections: int = Field(default=48, ge=16)

    # Runtimes
    vllm_image: str = "vllm/vllm-openai:v0.33.0"
    vllm_port: int = 8000
    llamacpp_image: str = "ghcr.io/ggml-org/llama.cpp:server"
    llamacpp_cuda_image: str = "ghcr.io/ggml-org/llama.cpp:server-cuda"
    llamacpp_port: int = 8080
    shm_size: str = "8Gi"
    # Minutes a server may take to load its model before Kubernetes restarts it.
    startup_minutes: int = Field(default=30, ge=1)

    # The init step that copies the model from the platform store into the pod.
    fetch_image: str = "modelserve/modelserve:0.1.0"
    model_store_endpoint: str = "modelserve-minio.modelserve.svc:9000"
    model_store_secure: bool = False
    model_store_access_key: SecretStr = SecretStr("")
    model_store_secret_key: SecretStr = SecretStr("")

    # Seconds a replica being replaced keeps answering the requests it has (preStop).
    drain_seconds: int = Field(default=10, ge=1)

    # Routes: Traefik's `/{server-id}/` leads to the gateway. A name with `@` is a Traefik
    # service of another provider; else a Kubernetes Service (in another namespace than the
    # ModelServe's, Traefik must allow cross-namespace references).
    route_entrypoints: str = "web"
    route_service: str = "modelserve-gateway"
    route_service_namespace: str = "modelserve"
    route_service_port: int = 8200

    # `external` servers
    external_probe_interval: float = Field(default=30.0, gt=0)
    external_probe_timeout: float = Field(default=5.0, gt=0)

    def namespace_list(self) -> list[str]:
        return [name.strip() for name in self.namespaces.split(",") if name.strip()]
