"""Settings of the operator, read from OPERATOR_* environment variables.

Images, ports and the other defaults of the servers the operator deploys live here,
so that a cluster can pin its own images without a change of code.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A DNS name, as Traefik's Host() and an HTTPRoute's hostnames take it.
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


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
    vllm_allowed_media_domains: str = ""
    """Space-separated domains vLLM servers may fetch media URLs from
    (`--allowed-media-domains`); empty: the flag is not given, and the gateway's check
    (GATEWAY_MEDIA_URL_HOSTS, or public addresses only) is the one that applies."""
    llamacpp_image: str = "ghcr.io/ggml-org/llama.cpp:server"
    llamacpp_cuda_image: str = "ghcr.io/ggml-org/llama.cpp:server-cuda"
    llamacpp_port: int = 8080
    shm_size: str = "8Gi"
    # Minutes a server may take to load its model before Kubernetes restarts it.
    startup_minutes: int = Field(default=30, ge=1)

    # The init step that copies the model from the platform store into the pod.
    fetch_image: str = "modelserve/modelserve:0.2.0"
    model_store_endpoint: str = "modelserve-minio.modelserve.svc:9000"
    """The platform store (host:port) as the PODS reach it: the URLs are signed for it."""
    model_store_read_endpoint: str = ""
    """The store as the operator reaches it, to list a model's objects and read their
    tags; empty: `model_store_endpoint`."""
    model_store_secure: bool = False
    model_store_region: str = "us-east-1"
    """The region URLs are signed for (MinIO's default); given, so signing is offline."""
    model_store_access_key: SecretStr = SecretStr("")
    """The operator's own credentials of the store: they never leave its namespace. Read
    access to the model bucket (objects, their tags, listing) is all it needs."""
    model_store_secret_key: SecretStr = SecretStr("")
    model_url_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    """How long a presigned model URL in a ModelServe's Secret stays valid."""
    model_url_refresh_seconds: float = Field(default=900, gt=0)
    """How often every ModelServe's URLs are signed anew (and its model's objects and
    digests read again): well within the expiry, so a pod starting at any time finds
    URLs valid for at least the difference."""

    pod_user: int = Field(default=10001, ge=1)
    """The user and group model-server pods run as (the platform image's own user; the
    llama.cpp and vLLM images would run as root)."""

    # Seconds a replica being replaced keeps answering the requests it has (preStop).
    drain_seconds: int = Field(default=10, ge=1)
    rollout_deadline_seconds: float = Field(default=1800.0, gt=0)
    """How long a new model (a change of spec.model.uri, e.g. by set_active) has to be Ready
    on every wanted replica before the operator puts the previous one back; counted while
    replicas are wanted. Give large models the time they take to load (startup_minutes)."""

    # Routes: `/{server-id}/` leads to the gateway. A name with `@` is a Traefik service of
    # another provider (IngressRoutes only); else a Kubernetes Service (in another namespace
    # than the ModelServe's, Traefik must allow cross-namespace references, and a Gateway
    # API implementation needs a ReferenceGrant there).
    route_entrypoints: str = "web"
    route_service: str = "modelserve-gateway"
    route_service_namespace: str = "modelserve"
    route_service_port: int = 8200
    route_kind: Literal["ingressroute", "httproute"] = "ingressroute"
    """What each per-server route is: Traefik's IngressRoute, or a Gateway API HTTPRoute
    (gateway.networking.k8s.io/v1) attached to the Gateway named below. The operator
    deletes the routes of the other kind it owns, so switching leaves none behind."""
    route_gateway_name: str = ""
    """The Gateway an HTTPRoute attaches to (parentRefs); required for `httproute`."""
    route_gateway_namespace: str = ""
    """The Gateway's namespace; empty: the ModelServe's own."""
    route_gateway_section_name: str = ""
    """One listener of the Gateway (its name); empty: every listener that allows the route."""
    # What the platform's own route to the gateway has (the chart's `ingressRoute`), so
    # that a per-server route is no way around it.
    route_host: str = ""
    """The host every per-server route matches (HTTPRoute: its hostnames); empty: any."""
    route_middlewares: str = ""
    """Traefik middlewares of every per-server IngressRoute, comma-separated
    `namespace/name` (a bare `name`: in OPERATOR_ROUTE_SERVICE_NAMESPACE)."""
    route_tls: bool = False
    """Per-server IngressRoutes are served over TLS, with the certificate Traefik has for
    the host (the platform route's) unless a resolver is named."""
    route_tls_cert_resolver: str = ""

    group_network_policy: bool = False
    """A NetworkPolicy per model over several nodes (spec.resources.nodes), made before its
    LeaderWorkerSet: the pods of its groups accept connections on every port from each
    other and from no other pod. Turn it on only beside policies that let the gateway
    reach the servers (the chart's `networkPolicy.enabled` does both): a pod that any
    policy selects accepts only what some policy allows."""

    # Dynamic loading (ModelServes with spec.autoscaling)
    metrics_port: int = Field(default=8211, ge=0)
    """Prometheus /metrics of the operator, on `health_host`; 0: none."""
    gateway_namespace: str = "modelserve"
    """Where the gateway replicas keep their load-report Leases; empty: no reports are read
    (no activation from held requests; load counts as none)."""
    autoscale_interval: float = Field(default=1.0, gt=0)
    """Seconds between two passes of the autoscaler when nothing wakes it (idle timeouts,
    drains and windows are counted at this pace; reports and pods wake it at once)."""
    drain_ack_seconds: float = Field(default=5.0, gt=0)
    """How long every live gateway replica has to acknowledge a drain (or a pod drain)
    before it is cancelled."""
    replica_drain_seconds: float = Field(default=300.0, gt=0)
    """How long a replica that goes when a model scales down (status.podDrain) may keep
    the requests it has once every gateway sends it nothing new; then it goes anyway."""
    last_request_write_seconds: float = Field(default=5.0, ge=0)
    """status.lastRequestTime is written at most this often when nothing else changed."""

    # `external` servers
    external_probe_interval: float = Field(default=30.0, gt=0)
    external_probe_timeout: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _urls_refreshed_before_they_expire(self) -> OperatorSettings:
        if self.model_url_refresh_seconds >= self.model_url_expiry_seconds:
            raise ValueError(
                "OPERATOR_MODEL_URL_REFRESH_SECONDS must be less than "
                "OPERATOR_MODEL_URL_EXPIRY_SECONDS: URLs would expire before they are renewed"
            )
        return self

    @field_validator("route_host")
    @classmethod
    def _a_host_name(cls, value: str) -> str:
        host = value.strip().lower()
        if host and not _HOST.match(host):
            raise ValueError(f"OPERATOR_ROUTE_HOST {value!r} is not a host name")
        return host

    @model_validator(mode="after")
    def _httproute_has_a_kubernetes_backend(self) -> OperatorSettings:
        if self.route_kind != "httproute":
            return self
        if "@" in self.route_service:
            raise ValueError(
                f"OPERATOR_ROUTE_KIND=httproute cannot lead to OPERATOR_ROUTE_SERVICE="
                f"{self.route_service!r}: a Traefik service of another provider (name@provider) "
                "has no Gateway API equivalent; name a Kubernetes Service (and its namespace "
                "and port) instead, or keep OPERATOR_ROUTE_KIND=ingressroute"
            )
        if not self.route_gateway_name:
            raise ValueError(
                "OPERATOR_ROUTE_KIND=httproute needs OPERATOR_ROUTE_GATEWAY_NAME: the Gateway "
                "each HTTPRoute attaches to"
            )
        return self

    def namespace_list(self) -> list[str]:
        return [name.strip() for name in self.namespaces.split(",") if name.strip()]
