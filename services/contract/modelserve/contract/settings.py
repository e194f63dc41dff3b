"""Settings of the contract service, read from CONTRACT_* environment variables.

The global defaults also answer to the seeds' names (MAX_REPLICAS, ALLOWED_NAMESPACES),
which deployments of the first version already set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from modelserve.common.modelserve import quantity_value
from modelserve.common.settings import ServiceSettings
from modelserve.common.tokens import TokenSettings


def _default(name: str) -> AliasChoices:
    return AliasChoices(f"CONTRACT_DEFAULT_{name}", name)


class ContractSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONTRACT_", populate_by_name=True)

    port: int = 8201
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    # With a value, GET /metrics needs `Authorization: Bearer <it>`; without, it is open.
    metrics_token: SecretStr | None = None
    # libpq URL; `?options=-csearch_path%3Dname` puts the tables in a schema of their own.
    database_url: SecretStr = SecretStr("postgresql://modelserve@localhost:5432/modelserve")
    # Few: on a small machine more connections only add contention (bench/contract_decisions.py).
    database_pool_size: int = Field(default=4, ge=1)
    # How long a request waits for a database connection before it answers 503.
    database_timeout: float = Field(default=2.0, gt=0)
    # Bring the schema to the newest revision at start-up (under a lock, so replicas may
    # start together). Off where a deployment migrates in a job of its own.
    migrate: bool = True

    # Global defaults: what a user or team without a contract of its own may do. A limit left
    # unset (empty) is no limit; allowlists are comma-separated patterns, `*` for any.
    default_models: str = Field(default="*", validation_alias=_default("MODELS"))
    default_runtimes: str = Field(default="*", validation_alias=_default("RUNTIMES"))
    # The images a ModelServe's spec.image may name: none unless a contract allows some.
    default_images: str = Field(default="", validation_alias=_default("IMAGES"))
    default_namespaces: str = Field(
        default="default,inference",
        validation_alias=AliasChoices("CONTRACT_DEFAULT_NAMESPACES", "ALLOWED_NAMESPACES"),
    )
    default_max_replicas: int | None = Field(
        default=5,
        ge=0,
        validation_alias=AliasChoices("CONTRACT_DEFAULT_MAX_REPLICAS", "MAX_REPLICAS"),
    )
    default_max_gpus: int | None = Field(default=None, ge=0, validation_alias=_default("MAX_GPUS"))
    default_max_servers: int | None = Field(
        default=None, ge=0, validation_alias=_default("MAX_SERVERS")
    )
    # A finite cap: a scaling budget multiplies what one request costs (empty: no limit).
    default_max_budget: int | None = Field(
        default=16, ge=0, validation_alias=_default("MAX_BUDGET")
    )
    default_requests_per_minute: int | None = Field(
        default=None, ge=0, validation_alias=_default("REQUESTS_PER_MINUTE")
    )
    default_tokens_per_minute: int | None = Field(
        default=None, ge=0, validation_alias=_default("TOKENS_PER_MINUTE")
    )
    default_token_budget: int | None = Field(
        default=None, ge=0, validation_alias=_default("TOKEN_BUDGET")
    )
    default_budget_period: str = Field(default="month", validation_alias=_default("BUDGET_PERIOD"))

    @field_validator(
        "default_max_replicas",
        "default_max_gpus",
        "default_max_servers",
        "default_max_budget",
        "default_requests_per_minute",
        "default_tokens_per_minute",
        "default_token_budget",
        mode="before",
    )
    @classmethod
    def _empty_is_no_limit(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    # Whether users may download models into the platform (a contract may say otherwise).
    default_downloads: bool = False

    # Token reservations not settled by a usage record within this time are charged: their
    # tokens count as used (a late record corrects them). Looked for this often, at most
    # every 60 s.
    reservation_seconds: float = Field(default=600.0, gt=0)
    # How long a lease (a slice of a limited counter granted to a gateway process, POST
    # /leases) lives unless its holder renews it; one neither renewed nor given back by
    # then is charged: what it still holds counts as used in its window.
    lease_seconds: float = Field(default=30.0, gt=0)
    # Tokens reserved for an inference request that names no max_tokens.
    default_reserved_tokens: int = Field(default=512, ge=0)

    # The admission webhook: HTTPS on its own port, an app with only the admission routes.
    webhook_port: int = 8443
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # The CA that signs the API server's client certificate for webhooks (its
    # AdmissionConfiguration's kubeConfigFile): the webhook accepts no connection without a
    # certificate of this CA, and the service refuses to start with TLS but without it.
    webhook_client_ca_file: Path | None = None
    # The certificate subjects (CN) accepted from that CA, comma-separated: other
    # certificates of the same CA (a cluster CA also signs users') are turned away.
    webhook_client_names: str = "kube-apiserver-webhook-client"
    # Kubernetes users acting for someone else: the user is in the ModelServe's owner label.
    delegating_users: str = "system:serviceaccount:modelserve:modelserve-gateway"
    # The operator's Kubernetes user: it writes kopf's state into every ModelServe's
    # annotations, which nobody else but the owner, admins and the gateway may change.
    operator_users: str = "system:serviceaccount:modelserve:modelserve-operator"
    # Kubernetes' own controllers: they delete ModelServes (a namespace deleted, an owner
    # gone) and drop owner references and finalizers, for no user; the webhook lets them.
    # With the controller manager's --use-service-account-credentials (kubeadm, k3s), each
    # controller has its service account; without it, the manager's own user.
    system_controllers: str = (
        "system:serviceaccount:kube-system:namespace-controller,"
        "system:serviceaccount:kube-system:generic-garbage-collector,"
        "system:kube-controller-manager"
    )
    # A Kubernetes group named <prefix><team> makes its members part of the team.
    team_group_prefix: str = "modelserve:team:"
    admin_groups: str = "modelserve:admins"
    # Namespaces where only platform admins serve, scale or stop servers, whatever a
    # contract says: the platform's own servers (reward models, shared models) live there.
    platform_namespaces: str = "modelserve"

    # What a ModelServe may run. Its `spec.model.uri` must lie under this prefix (the
    # platform bucket's `models/`, where the download service puts each model record as
    # `models/<model-id>/`); contracts' model allowlists hold for that model id too.
    model_prefix: str = "s3://inference-models/models/"
    # Who may create `external` ModelServes (a URL the platform calls): `admins`, or
    # `everyone` (then URLs are checked: see the next settings).
    external_for: Literal["admins", "everyone"] = "admins"
    # The cluster's pod and service ranges (CIDRs, comma-separated): refused as external
    # URLs of non-admins, like loopback, link-local, private and CGNAT addresses.
    cluster_cidrs: str = ""
    # Hosts or CIDRs that admins open to everyone's external URLs, comma-separated.
    external_allowed: str = ""
    # A tenant's model cache (spec.model.cache, a PersistentVolumeClaim the operator makes):
    # at most this size (a Kubernetes quantity; empty: any), and of the cluster's default
    # StorageClass unless it names one of these (comma-separated; empty: none). Admins may
    # ask for any.
    max_cache_size: str = "1Ti"
    cache_storage_classes: str = ""
    # The CPU and memory a tenant's server pod may reserve (spec.resources.cpu and memory,
    # or their limits where no request is set, as Kubernetes then requests the limit):
    # Kubernetes quantities; empty: any. A pod's reservation keeps other tenants' pods off
    # the GPUs of its node that it leaves free. Admins may ask for any.
    max_cpu: str = "32"
    max_memory: str = "256Gi"
    # The taints a tenant's spec.placement.tolerations may name (comma-separated keys): a
    # taint keeps a pool of nodes for someone; admins may tolerate any.
    tenant_toleration_keys: str = "nvidia.com/gpu"

    @field_validator("max_cache_size", "max_cpu", "max_memory")
    @classmethod
    def _a_quantity(cls, value: str) -> str:
        if value.strip() and quantity_value(value.strip()) is None:
            raise ValueError(f"{value!r} is not a Kubernetes quantity (such as 500Gi)")
        return value.strip()

    # The server ledger follows the cluster's ModelServes: a list, then a watch that is
    # renewed (with a new list) every this many seconds (0: never; then the service needs no
    # Kubernetes credentials, and nothing but decisions of the gateway enter the ledger).
    inventory_seconds: float = Field(default=30.0, ge=0)
    # A server the gateway's decision recorded but not seen in the cluster after this long
    # was never created.
    inventory_grace_seconds: float = Field(default=120.0, gt=0)

    @field_validator("webhook_client_names")
    @classmethod
    def _some_client(cls, value: str) -> str:
        if not [name for name in value.split(",") if name.strip()]:
            raise ValueError("name the API server's client certificate (its CN)")
        return value
