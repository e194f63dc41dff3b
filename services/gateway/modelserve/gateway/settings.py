"""Settings of the gateway service, read from GATEWAY_* environment variables.

The database also answers to the seeds' DATABASE_URL.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from modelserve.common.settings import ServiceSettings
from modelserve.common.tokens import TokenSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", populate_by_name=True)

    port: int = 8200
    # Worker processes serving the one port (uvicorn's workers, each a whole gateway with
    # its own lifespan, pools and load report); see docs/gateway.md for what is per worker.
    workers: int = Field(default=1, ge=1, le=64)
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
    # Bring the schema to the newest revision at start-up (under a lock, so replicas may
    # start together). Off where a deployment migrates in a job of its own.
    migrate: bool = True
    # Signing in (POST /auth/token), counted per gateway process: with N replicas behind a
    # load balancer, N times as many attempts get through. Client addresses are the
    # peer's, or X-Forwarded-For's from a proxy in FORWARDED_ALLOW_IPS (uvicorn's setting).
    sign_in_window_seconds: float = Field(default=60.0, gt=0)
    """The sliding window the two limits below count in."""
    sign_in_failures_per_user: int = Field(default=5, ge=1)
    """Failed sign-ins of one user name (from anywhere) per window; past it, 429."""
    sign_in_failures_per_address: int = Field(default=20, ge=1)
    """Failed sign-ins from one client address (any user names) per window; past it, 429.
    Successful ones are not counted: many people may share an address (NAT)."""
    password_checks_at_once: int = Field(default=4, ge=1)
    """Argon2 hashes running at once (each holds 64 MiB)."""
    password_check_queue: int = Field(default=32, ge=0)
    """Argon2 hashes waiting for their turn; past it, 503 `sign_in_busy`."""

    # The other services. Without a contract service nothing is limited (and no usage is
    # recorded); without a download service /models lists nothing.
    contract_url: str | None = None
    download_url: str | None = None
    # The jobs service (/jobs, /v1/files, /v1/batches, /eval, /data_gen, /generate are
    # passed to it as the caller); unset: those routes answer 404 jobs_not_configured.
    jobs_url: str | None = None
    # An OpenTelemetry collector's OTLP/HTTP base URL (`/v1/traces` is appended): each
    # request's span and those of its calls to model servers are sent there. Unset (or
    # empty), nothing is recorded and the SDK is not loaded; the trace context is still
    # carried. OpenTelemetry's own variable sets it too.
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GATEWAY_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    )
    # A file upload or download through the gateway may wait this long for a read.
    jobs_timeout_seconds: float = Field(default=300.0, gt=0)
    # Requests to the jobs service at once (its own connections, apart from the
    # gateway's calls to the contract and download services); more wait, then 503.
    jobs_connections: int = Field(default=32, ge=1)
    # The platform services that may ask POST /auth/delegate for a user's token (to run
    # that user's queued work as them), comma-separated service names.
    delegating_services: str = "jobs"

    @property
    def delegating_service_names(self) -> frozenset[str]:
        return frozenset(
            name.strip() for name in self.delegating_services.split(",") if name.strip()
        )

    # Kubernetes: where servers (ModelServes) are created unless a request names a
    # namespace; credentials from $KUBECONFIG (or `kubeconfig`), else in-cluster.
    namespace: str = "default"
    kubeconfig: Path | None = None
    # Watch ModelServes in every namespace (needs cluster-wide list/watch) or only these.
    watch_namespaces: str = "*"
    # Namespaces of the platform's own servers (comma-separated; watched besides the
    # above). Everyone may use a server there, after their own and their teams' servers
    # of the same name; reward models resolve among these alone. Serving into them must be
    # for admins only (the contract service's namespaces).
    platform_namespaces: str = "modelserve"
    # The public base URL of the platform's ingress (Traefik), where each server answers
    # at /{server-id}/v1 (the seeds' http://localhost:8080). Unset: /status shows the path.
    ingress_url: str | None = None

    # The proxy: connections kept to model servers, and how long to wait for them.
    upstream_connections: int = Field(default=256, ge=1)
    upstream_connect_timeout: float = Field(default=5.0, gt=0)
    # Between two bytes of a response (a long generation streams; a silent one is stuck).
    upstream_read_timeout: float = Field(default=300.0, gt=0)
    # Request bodies over this are refused with 413 before they reach a model server.
    max_body_bytes: int = Field(default=8 << 20, ge=1024)
    # Token usage goes through a durable outbox (the table usage_outbox in this database):
    # each settled request is written there (batched INSERTs, within milliseconds, the rows
    # claimed for this replica's sender), and the sender delivers them and other due rows
    # to the contract service this often, under their ids (which it counts once),
    # deleting each once the contract has it.
    usage_flush_seconds: float = Field(default=1.0, gt=0)
    # A delivery that failed is tried again after this, doubled with every failure of
    # the same record, up to `usage_retry_max_seconds`: nothing is ever dropped.
    usage_retry_seconds: float = Field(default=1.0, gt=0)
    usage_retry_max_seconds: float = Field(default=300.0, gt=0)
    # Rows one sender delivers at a time (what its writer handed it, then rows claimed
    # FOR UPDATE SKIP LOCKED: replicas share the outbox), and how long a claim holds (a
    # row written claimed too): a replica that dies leaves its rows to the others after
    # this.
    usage_batch_size: int = Field(default=200, ge=1, le=10_000)
    usage_lease_seconds: float = Field(default=60.0, gt=0)
    # Inference-time scaling: upstream calls one scaled request may have in flight (per
    # model it calls), and how often a streamed one sends a keep-alive comment while its
    # candidates are generated.
    scaling_concurrency: int = Field(default=8, ge=1, le=256)
    scaling_keepalive_seconds: float = Field(default=5.0, gt=0)
    # Tokens reserved with the contract per candidate of a scaled request that names no
    # max_tokens (as the contract's CONTRACT_DEFAULT_RESERVED_TOKENS does for one answer):
    # the reservation is budget x this.
    scaling_reserved_tokens: int = Field(default=512, ge=0)
    # Usage records waiting in memory to be written to the outbox (only while the
    # database is slow or down); past this, new ones are dropped, logged and counted.
    # Also the most written rows that wait in memory for this replica's sender; past
    # that, rows are written due, for any replica's claim.
    usage_queue_size: int = Field(default=10_000, ge=1)
    # How long a call to the contract service may take (connect, then read): POST
    # /leases, which a request waits for when it needs a grant or its principal's limits.
    contract_timeout: float = Field(default=2.0, gt=0)
    # Inference is decided in the gateway's process from quota the contract service
    # leases to it (docs/gateway.md#decisions-from-leased-quota). A principal's limits
    # are read again when older than this (active principals' in the background, ahead
    # of it), so that a contract change reaches decisions within it; 0: read before
    # every request.
    quota_refresh_seconds: float = Field(default=5.0, ge=0)
    # Tokens held for a request that names no max_tokens (per prompt of a list).
    default_reserved_tokens: int = Field(default=512, ge=0)
    # Ask streamed requests for their usage (`stream_options.include_usage`) when the
    # client did not, taking the extra usage chunk out of what the client receives. Off
    # for model servers that refuse the option.
    inject_stream_usage: bool = True
    # Media URLs in chat messages (`image_url`, `video_url`, `audio_url`), which model
    # servers fetch from inside the cluster (modelserve.gateway.media_urls): false, only
    # data: URLs pass; otherwise http(s) URLs whose host is, or resolves to, public
    # addresses only, or, with GATEWAY_MEDIA_URL_HOSTS (comma-separated `host` or
    # `*.domain`), only URLs of those hosts.
    remote_media: bool = True
    media_url_hosts: str = ""
    # A completion with a list of prompts, to a server that takes one prompt a request
    # (llama.cpp, external): this many of its prompts in flight at once.
    fanout_concurrency: int = Field(default=8, ge=1, le=256)
    # ModelServes are listed again this often (a watch only sends changes), which also
    # re-reads the API keys of external servers.
    discovery_resync_seconds: float = Field(default=300.0, gt=0)
    # With a value, GET /metrics needs `Authorization: Bearer <it>`; without, it is open.
    metrics_token: SecretStr | None = None
    # The web UI's build (web/dist, docs/ui.md), served under /ui; unset or empty: /ui
    # answers 404 (the image sets it to the build it holds; the chart empties it to turn
    # the UI off).
    ui_dir: Path | None = None

    # Dynamic loading (ModelServes with spec.autoscaling). A request for such a model
    # that has no ready endpoint (asleep, waking, loading, being put to sleep) is held
    # until it has one, instead of refused.
    hold_queue: int = Field(default=100, ge=0)
    """Requests held per model on this replica; past it, 429 `model_loading_queue_full`."""
    hold_timeout_seconds: float = Field(default=300.0, gt=0)
    """How long a request is held; then 503 `model_loading_timeout` with Retry-After."""
    hold_keepalive_seconds: float = Field(default=5.0, gt=0)
    """A held streaming request gets an SSE comment this often while it waits."""
    # Each replica tells the operator what it holds and serves in a Lease of its own
    # (common.load_reports), renewed this often, and at once when a request is first
    # held for a model or a drain starts.
    load_report_seconds: float = Field(default=2.0, gt=0)
    load_lease_seconds: float = Field(default=10.0, gt=0)
    """How long a report counts without renewal (a dead replica's requests stop counting)."""
    load_namespace: str = "modelserve"
    """Where the Leases are (the operator reads them there)."""
    replica_id: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=200
    )
    """This replica's name in its Lease; by default the host name, process id and a
    random part."""

    # GPUs (GET /gpu, /health's gpu summary) and power profiles. The node agents' report
    # Leases and the power profile ConfigMap are in GATEWAY_LOAD_NAMESPACE too.
    gpu_cache_seconds: float = Field(default=5.0, ge=0)
    """How long /health reuses what it read of the nodes and the node agents' reports."""
    # Each power profile's GPU power limit (watts, per GPU) and job concurrency (seed 003's
    # figures by default). POST /settings/power_profile stores these with the choice.
    power_quiet_watts: float = Field(default=220.0, gt=0)
    power_quiet_jobs: int = Field(default=1, ge=1)
    power_normal_watts: float = Field(default=280.0, gt=0)
    power_normal_jobs: int = Field(default=1, ge=1)
    power_max_watts: float = Field(default=350.0, gt=0)
    power_max_jobs: int = Field(default=2, ge=1)

    # The arena (docs/arena.md).
    arena_max_tokens: int = Field(default=512, ge=1, le=32_768)
    """The tokens each side of a battle may answer a turn with (a turn may ask fewer)."""
    arena_turn_seconds: float = Field(default=900.0, gt=0)
    """How long one turn may take (models woken included): a battle is held for its turn
    this long at most, so that a replica that dies mid-turn frees it."""
    arena_bootstrap_rounds: int = Field(default=100, ge=0, le=1000)
    """Bootstrap resamples of a leaderboard's intervals when a request names none."""
    arena_counted_votes_per_day: int = Field(default=50, ge=0)
    """The votes of one voter that count on the leaderboards in a UTC day; later ones are
    kept but do not count (`daily_limit`), so that one person voting on many battles
    cannot carry a board alone. 0: no limit."""

    @field_validator("ui_dir", "otlp_endpoint", mode="before")
    @classmethod
    def _none_when_empty(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _lease_outlives_renewals(self) -> GatewaySettings:
        if self.load_lease_seconds <= self.load_report_seconds:
            raise ValueError("GATEWAY_LOAD_LEASE_SECONDS must exceed GATEWAY_LOAD_REPORT_SECONDS")
        return self
