"""The ModelServe resource as typed models: the spec a user writes, as every component reads it.

The CRD in crds/ validates manifests at the API server; these models are what the
operator's builders read, with the same names (camelCase on the wire) and defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from kubernetes.utils import parse_quantity
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP = "llm.modelserve.io"
VERSION = "v1alpha1"
PLURAL = "modelserves"
KIND = "ModelServe"
# Who a ModelServe is for: the user it was made for, and the team it counts against.
OWNER_LABEL = f"{GROUP}/owner"
TEAM_LABEL = f"{GROUP}/team"
# A Secret that an external ModelServe may name for its API key carries this label with the
# value "true": the operator and the gateway read no other Secret for a ModelServe, so a
# user who may create ModelServes cannot have any Secret of a namespace sent to their URL.
API_KEY_LABEL = f"{GROUP}/api-key"
# What the operator runs for a ModelServe, as the other components find it: every pod of a
# server carries SERVER_LABEL=<ModelServe name>; its containers are the model server and
# the init step that fetches the model; GPUs are the device plugin's resource, their
# product a node label (NVIDIA's GPU feature discovery).
SERVER_LABEL = f"{GROUP}/modelserve"
SERVER_CONTAINER = "server"
FETCH_CONTAINER = "fetch-model"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


# ... and this annotation: the hosts (`host` or `host:port`, comma-separated) its key may be
# sent to. A key goes to no other host, and nowhere from a Secret without the annotation.
API_KEY_HOSTS_ANNOTATION = f"{GROUP}/api-key-hosts"


def holds_api_key(labels: Mapping[str, str] | None) -> bool:
    """Whether a Secret with these labels was given to ModelServes for an API key."""
    return (labels or {}).get(API_KEY_LABEL) == "true"


def _host_and_port(netloc: str, default: int | None) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.path:
        return None
    return host.lower().rstrip("."), port if port is not None else default


def key_may_go_to(annotations: Mapping[str, str] | None, url: str) -> bool:
    """Whether the API key of a Secret with these annotations may be sent to `url`: its
    host is among API_KEY_HOSTS_ANNOTATION's. An entry without a port stands for the
    scheme's default one (443 for https, 80 for http); no annotation, no host."""
    try:
        target = urlsplit(url)
        port = target.port
    except ValueError:
        return False
    if target.scheme not in ("http", "https") or not target.hostname:
        return False
    default = 443 if target.scheme == "https" else 80
    wanted = (target.hostname.lower().rstrip("."), port if port is not None else default)
    entries = (annotations or {}).get(API_KEY_HOSTS_ANNOTATION, "").split(",")
    return any(
        _host_and_port(entry.strip(), default) == wanted for entry in entries if entry.strip()
    )


class Runtime(StrEnum):
    VLLM = "vllm"
    LLAMACPP = "llamacpp"
    EXTERNAL = "external"


class ModelFormat(StrEnum):
    GGUF = "gguf"
    SAFETENSORS = "safetensors"


class Wire(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are the CRD's business."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class ModelCache(Wire):
    enabled: bool = False
    size: str = "50Gi"
    storage_class_name: str | None = None


class ModelSource(Wire):
    uri: str | None = None  # s3://bucket/key (a file) or s3://bucket/prefix/ (a folder)
    model_id: str | None = None
    format: ModelFormat | None = None
    served_name: str | None = None
    cache: ModelCache = ModelCache()

    def bucket_and_key(self) -> tuple[str, str]:
        if not self.uri or not self.uri.startswith("s3://"):
            raise ValueError(f"model.uri must be s3://bucket/key, got {self.uri!r}")
        bucket, _, key = self.uri.removeprefix("s3://").partition("/")
        return bucket, key

    @property
    def is_folder(self) -> bool:
        return bool(self.uri and self.uri.endswith("/"))


def quantity_value(text: str) -> Decimal | None:
    """The number a Kubernetes quantity (8, 500m, 16Gi, 1e3) stands for; None if it is
    not one (the Kubernetes client's parser, as the gateway's /system reads them)."""
    try:
        value: Decimal = parse_quantity(text)
    except ValueError:
        return None
    return value


# The most nodes one replica may span (spec.resources.nodes), as the CRD says.
MAX_NODES = 16


class Resources(Wire):
    gpus: int = Field(default=0, ge=0)
    gpu_type: str | None = None
    # A model spread over several nodes (see docs/multi-node.md): one replica is a group of
    # this many pods, each with `gpus` GPUs. None: one pod per replica, as always.
    nodes: int | None = Field(default=None, ge=2, le=MAX_NODES)
    # Quantities: the CRD takes 8 as well as "8" or "500m"; the builders want strings.
    # cpu and memory are the pod's requests, the *_limit fields its limits.
    cpu: str | None = None
    memory: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None

    @field_validator("cpu", "memory", "cpu_limit", "memory_limit", mode="before")
    @classmethod
    def _quantity(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _limits_not_below_requests(self) -> Resources:
        for request, limit, name in (
            (self.cpu, self.cpu_limit, "cpu"),
            (self.memory, self.memory_limit, "memory"),
        ):
            wanted = quantity_value(request) if request else None
            most = quantity_value(limit) if limit else None
            if wanted is not None and most is not None and most < wanted:
                raise ValueError(
                    f"spec.resources.{name}Limit ({limit}) must not be below "
                    f"spec.resources.{name} ({request})"
                )
        return self


class EnvVar(Wire):
    name: str
    value: str = ""


class PodField(Wire):
    """A part of the spec that goes onto the pod as Kubernetes writes it."""

    def as_pod_field(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class NameRef(Wire):
    """A ConfigMap or Secret of the ModelServe's namespace, by name."""

    name: str
    optional: bool | None = None


class EnvFromSource(PodField):
    """Every key of one ConfigMap or Secret as environment variables (spec.envFrom)."""

    prefix: str | None = None
    config_map_ref: NameRef | None = None
    secret_ref: NameRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError("each spec.envFrom entry names one configMapRef or one secretRef")
        return self


class LocalObjectReference(Wire):
    name: str


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(PodField):
    """One Kubernetes toleration of the model server's pods (the CRD checks its shape)."""

    key: str | None = None
    operator: TolerationOperator | None = None
    value: str | None = None
    effect: TaintEffect | None = None
    toleration_seconds: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator is TolerationOperator.EXISTS and self.value:
            raise ValueError("a toleration with operator Exists takes no value")
        if not self.key and self.operator is not TolerationOperator.EXISTS:
            raise ValueError("a toleration without a key needs operator Exists")
        if self.toleration_seconds is not None and self.effect is not TaintEffect.NO_EXECUTE:
            raise ValueError("tolerationSeconds only applies with effect NoExecute")
        return self


class Affinity(PodField):
    """The pod's Kubernetes affinity, as written: the API server checks its inside when the
    operator applies the Deployment."""

    node_affinity: dict[str, Any] | None = None
    pod_affinity: dict[str, Any] | None = None
    pod_anti_affinity: dict[str, Any] | None = None


class Placement(Wire):
    """Where the model server's pods may run (spec.placement), added to what the operator
    sets itself for GPUs."""

    node_selector: dict[str, str] = {}
    tolerations: tuple[Toleration, ...] = ()
    affinity: Affinity | None = None
    priority_class_name: str | None = None

    @field_validator("node_selector")
    @classmethod
    def _no_gpu_product(cls, value: dict[str, str]) -> dict[str, str]:
        if GPU_PRODUCT_LABEL in value:
            raise ValueError(
                f"spec.placement.nodeSelector may not name {GPU_PRODUCT_LABEL}: "
                "use spec.resources.gpuType"
            )
        return value


# A LoRA adapter's name: what clients put in `model` and what vLLM's --lora-modules takes
# before its '=' (so no '=', ',' or space), like a served name without a slash.
ADAPTER_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9._]{0,61}[A-Za-z0-9])?")
MAX_ADAPTERS = 16


class Adapter(Wire):
    """A LoRA adapter of the served model (spec.adapters): clients name it in `model`, and
    the gateway sends its requests to the base model's server, which loads every adapter
    of its ModelServe at start."""

    name: str
    # s3://bucket/key.gguf (llamacpp: one GGUF file) or s3://bucket/prefix/ (vllm: a
    # folder in PEFT layout), in the platform store as a model is.
    uri: str
    # llamacpp: the adapter's weight in a request for it (llama-server's per-request lora).
    scale: float = Field(default=1.0, ge=0.0, le=8.0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ADAPTER_NAME.fullmatch(value):
            raise ValueError(
                f"adapter name {value!r}: use 1 to 63 letters, digits, '-', '.' and '_', "
                "starting and ending with a letter or digit"
            )
        return value

    @property
    def is_folder(self) -> bool:
        return self.uri.endswith("/")


class VllmOptions(Wire):
    gpu_memory_utilization: float = 0.9
    prefix_caching: bool = True
    max_model_len: int | None = None


class LlamacppOptions(Wire):
    context_size: int = 4096


class SecretKeyRef(Wire):
    name: str
    key: str = "api-key"


class ExternalServer(Wire):
    url: str
    api_key_secret_ref: SecretKeyRef | None = None


class Algorithm(StrEnum):
    NONE = "none"
    BEST_OF_N = "best-of-n"
    SELF_CONSISTENCY = "self-consistency"
    PARTICLE_FILTERING = "particle-filtering"
    BEAM_SEARCH = "beam-search"


class RewardKind(StrEnum):
    MODEL = "model"  # a reward model served by another ModelServe (vLLM pooling)
    JUDGE = "judge"  # a served model asked whether the answer is correct: P("yes")
    LOGPROB = "logprob"  # the candidate's mean token log-probability


class Aggregation(StrEnum):
    MIN = "min"
    LAST = "last"
    PRODUCT = "product"
    MEAN = "mean"


class Scaling(Wire):
    """Defaults of inference-time scaling for requests to this model (see the gateway)."""

    algorithm: Algorithm = Algorithm.NONE
    budget: int = Field(default=1, ge=1, le=1024)
    reward_model: str | None = None
    # None: a reward model when one is named, else the candidates' mean log-probability.
    reward: RewardKind | None = None
    reward_aggregation: Aggregation = Aggregation.MIN
    answer_pattern: str | None = None
    step_delimiter: str = "\n\n"


class Autoscaling(Wire):
    """Dynamic loading (spec.autoscaling): the operator runs between `min_replicas` and
    `max_replicas` replicas from the requests the gateways report; with `min_replicas`
    0 the model sleeps after `idle_timeout_seconds` without a request and wakes on the
    next one. Without this block a ModelServe runs `spec.replicas`, as always."""

    min_replicas: int = Field(default=1, ge=0, le=100)
    max_replicas: int = Field(default=1, ge=1, le=100)
    # Seconds without a request after which a model with min_replicas 0 goes to sleep.
    idle_timeout_seconds: int = Field(default=600, ge=10, le=7 * 24 * 3600)
    # Requests in flight or held per replica that the operator aims for (KubeAI's
    # targetRequests), averaged over `window_seconds` so that it does not flap.
    target_requests: int = Field(default=4, ge=1, le=100_000)
    window_seconds: int = Field(default=60, ge=1, le=3600)
    # A model woken less than this long ago is not put to sleep for another (thrash guard).
    min_residence_seconds: int = Field(default=120, ge=0, le=24 * 3600)
    # Never put to sleep for another model (nor for idleness).
    pinned: bool = False
    # A model is put to sleep only for a model of the same or a higher priority.
    priority: int = Field(default=0, ge=0, le=1000)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling.minReplicas must not exceed autoscaling.maxReplicas")
        return self


class Parallelism(Wire):
    """How vLLM splits a model spread over several nodes (spec.parallelism): `tensor` GPUs
    share each layer, `pipeline` stages hold consecutive layers. Their product is every GPU
    of the group (vLLM's world size)."""

    tensor: int = Field(ge=1, le=128)
    pipeline: int = Field(ge=1, le=MAX_NODES * 16)


# The vLLM flags that spec.resources.nodes and spec.parallelism set: `args` with them too
# would disagree with the group the operator makes (-tp and -pp are vLLM's short forms).
PARALLEL_FLAGS = (
    "--tensor-parallel-size",
    "-tp",
    "--pipeline-parallel-size",
    "-pp",
    "--distributed-executor-backend",
)


class ModelServeSpec(Wire):
    runtime: Runtime
    model: ModelSource = ModelSource()
    adapters: tuple[Adapter, ...] = Field(default=(), max_length=MAX_ADAPTERS)
    replicas: int = Field(default=1, ge=0)
    resources: Resources = Resources()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    env_from: tuple[EnvFromSource, ...] = ()
    # The model server's image instead of the operator's for the runtime (the contract's
    # `images` allowlist decides who may name which).
    image: str | None = None
    image_pull_secrets: tuple[LocalObjectReference, ...] = ()
    placement: Placement = Placement()
    vllm: VllmOptions = VllmOptions()
    llamacpp: LlamacppOptions = LlamacppOptions()
    external: ExternalServer | None = None
    scaling: Scaling = Scaling()
    autoscaling: Autoscaling | None = None
    parallelism: Parallelism | None = None

    @model_validator(mode="after")
    def _no_image_for_external(self) -> ModelServeSpec:
        if self.runtime is Runtime.EXTERNAL and self.image is not None:
            raise ValueError("runtime external runs elsewhere: leave out spec.image")
        return self

    @model_validator(mode="after")
    def _adapters_fit_the_runtime(self) -> ModelServeSpec:
        names = [adapter.name for adapter in self.adapters]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"spec.adapters names {twice[0]!r} twice: each needs its own name")
        if not self.adapters:
            return self
        if self.runtime is Runtime.EXTERNAL:
            raise ValueError(
                "runtime external runs elsewhere: the platform loads no adapter into it, "
                "leave out spec.adapters"
            )
        for adapter in self.adapters:
            if self.runtime is Runtime.LLAMACPP and adapter.is_folder:
                raise ValueError(
                    f"adapter {adapter.name!r}: runtime llamacpp loads an adapter from one "
                    "GGUF file, s3://BUCKET/KEY.gguf, not a folder"
                )
            if self.runtime is Runtime.VLLM and not adapter.is_folder:
                raise ValueError(
                    f"adapter {adapter.name!r}: runtime vllm loads an adapter from a folder "
                    "in PEFT layout (adapter_config.json and its weights): end its uri in /"
                )
        return self

    @model_validator(mode="after")
    def _groups_fit(self) -> ModelServeSpec:
        nodes = self.resources.nodes
        if nodes is None:
            if self.parallelism is not None:
                raise ValueError(
                    "spec.parallelism splits a model over several nodes: set "
                    "spec.resources.nodes (2 or more) with it, or leave it out"
                )
            return self
        if self.runtime is not Runtime.VLLM:
            raise ValueError(
                "spec.resources.nodes spreads a model over several nodes with vLLM over Ray: "
                "only runtime vllm takes it"
            )
        if self.resources.gpus < 1:
            raise ValueError(
                "spec.resources.nodes needs spec.resources.gpus, the GPUs of each node, 1 or more"
            )
        if self.parallelism is not None:
            product = self.parallelism.tensor * self.parallelism.pipeline
            if product != nodes * self.resources.gpus:
                raise ValueError(
                    f"spec.parallelism: tensor x pipeline ({product}) must equal every GPU "
                    f"of the group, spec.resources.nodes x spec.resources.gpus "
                    f"({nodes * self.resources.gpus})"
                )
        for arg in self.args:
            if arg.split("=", 1)[0] in PARALLEL_FLAGS:
                raise ValueError(
                    f"spec.args sets {arg.split('=', 1)[0]}, which spec.resources.nodes and "
                    "spec.parallelism set for a model over several nodes: remove it"
                )
        return self

    @property
    def group_size(self) -> int:
        """Pods per replica: spec.resources.nodes, or 1."""
        return self.resources.nodes or 1

    @property
    def tensor_parallel_size(self) -> int:
        """vLLM's --tensor-parallel-size: spec.parallelism.tensor, else the GPUs of a pod
        (vLLM's advice for several nodes: tensor within a node, pipeline across nodes)."""
        return self.parallelism.tensor if self.parallelism else self.resources.gpus

    @property
    def pipeline_parallel_size(self) -> int:
        """vLLM's --pipeline-parallel-size: spec.parallelism.pipeline, else the nodes."""
        return self.parallelism.pipeline if self.parallelism else self.group_size

    @property
    def most_replicas(self) -> int:
        """The most replicas this spec may run (what the contract's limits count): with
        spec.autoscaling, the autoscaler may go up to maxReplicas."""
        if self.autoscaling is None:
            return self.replicas
        return max(self.replicas, self.autoscaling.max_replicas)


class ModelServe(BaseModel):
    """What the builders need of a ModelServe object: identity and spec."""

    model_config = ConfigDict(frozen=True)

    name: str
    namespace: str
    uid: str
    generation: int
    spec: ModelServeSpec

    @model_validator(mode="after")
    def _adapter_names_not_the_model(self) -> ModelServe:
        if any(adapter.name == self.served_name for adapter in self.spec.adapters):
            raise ValueError(
                f"spec.adapters: an adapter may not be named {self.served_name!r}, the "
                "served name of the model itself"
            )
        return self

    def adapter(self, name: str) -> Adapter | None:
        return next((a for a in self.spec.adapters if a.name == name), None)

    @classmethod
    def from_body(cls, body: dict[str, Any] | Any) -> ModelServe:
        meta = body["metadata"]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=meta.get("generation", 1),
            spec=ModelServeSpec.model_validate(dict(body["spec"])),
        )

    @property
    def served_name(self) -> str:
        return self.spec.model.served_name or self.name

    @property
    def server_id(self) -> str:
        """The id in the route (`/{server-id}/`): the object's UID, unique across namespaces."""
        return self.uid
