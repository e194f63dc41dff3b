"""Servers as the seeds' API shows them, and the ModelServes behind them (pure functions).

`build_modelserve` turns a `POST /serve` request and the model record it names into the
ModelServe manifest the gateway creates; `server_status` reads a ModelServe object back as
what `GET /status` answers. Nothing here talks to the cluster.
"""

from __future__ import annotations

import re
import secrets
import shlex
import string
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelserve.common.errors import ApiError
from modelserve.common.modelserve import (
    GROUP,
    KIND,
    MAX_NODES,
    OWNER_LABEL,
    TEAM_LABEL,
    VERSION,
    ModelFormat,
    ModelServeSpec,
    Parallelism,
    Runtime,
)
from modelserve.common.rollouts import MODEL_VERSION_ANNOTATION, Rollout, running_model
from modelserve.common.tokens import Claims
from modelserve.gateway.models import ModelRecord

# The CRD's rule on names: at most 50 of [a-z0-9-], starting with a letter; 49 with
# spec.resources.nodes (LeaderWorkerSet's StatefulSets put NAME-GROUP-HASH in a label).
MAX_NAME = 50
MAX_GROUP_NAME = 49
SUFFIX_LENGTH = 6
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
# A Kubernetes label value: at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends.
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
# RFC 1123 label: what a namespace name is.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# The CRD's bounds of spec.replicas.
MAX_REPLICAS = 100
DEFAULT_RUNTIME = {ModelFormat.GGUF: Runtime.LLAMACPP, ModelFormat.SAFETENSORS: Runtime.VLLM}
# Before the operator has written a status.
NO_STATUS_YET = "Pending"
STOPPING = "Stopping"


class ServeParallelism(Parallelism):
    """`parallelism` of a POST /serve body: the ModelServe's spec.parallelism, its bounds,
    and no other field."""

    model_config = ConfigDict(extra="forbid")


class ServeRequest(BaseModel):
    """The body of `POST /serve`: the seeds' fields, and the ModelServe's others."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_uuid: str | None = Field(
        default=None, min_length=1, description="the model record's id; wins over model_name"
    )
    model_name: str | None = Field(default=None, min_length=1, description="the record's name")
    runtime: Literal["vllm", "llamacpp"] | None = Field(
        default=None, description="default: llamacpp for gguf models, vllm for safetensors"
    )
    replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    gpus: int | None = Field(
        default=None,
        ge=0,
        le=16,
        description="per replica (with nodes: per node); default 1 for vllm, 0 for llamacpp",
    )
    nodes: int | None = Field(
        default=None,
        ge=2,
        le=MAX_NODES,
        description="spread the model over this many nodes, `gpus` on each: each replica is "
        "a group of this many pods (vllm only); default: one pod per replica",
    )
    parallelism: ServeParallelism | None = Field(
        default=None,
        description="with nodes: vLLM's tensor and pipeline sizes, tensor x pipeline = "
        "nodes x gpus; default: tensor = gpus, pipeline = nodes",
    )
    gpu_type: str | None = Field(default=None, min_length=1, max_length=63)
    runtime_params: str | list[str] = Field(
        default="",
        description='flags for the model server, as a shell would split them ("--ctx-size 2048")',
    )
    namespace: str | None = Field(default=None, description="default: the gateway's namespace")
    served_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="the name for the `model` field of OpenAI requests; default: the model's",
    )
    team: str | None = Field(
        default=None, min_length=1, description="default: the caller's first team"
    )

    @model_validator(mode="after")
    def _names_a_model(self) -> Self:
        if self.model_uuid is None and self.model_name is None:
            raise ValueError("name the model to serve: model_uuid or model_name")
        return self

    def args(self) -> list[str]:
        if isinstance(self.runtime_params, list):
            return list(self.runtime_params)
        try:
            return shlex.split(self.runtime_params)
        except ValueError as error:
            raise ApiError(
                422, "invalid_runtime_params", f"runtime_params cannot be split: {error}"
            ) from error


def slug(text: str) -> str:
    """`text` as the start of a ModelServe name: lowercase letters, digits and '-',
    starting with a letter (`server_name` cuts it to length)."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not words or not words[0].isalpha():
        words = f"m-{words}".rstrip("-")
    return words


def new_suffix() -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))


def server_name(model_name: str, suffix: str, longest: int = MAX_NAME) -> str:
    """A ModelServe name for `model_name`, at most `longest` characters."""
    start = slug(model_name)[: longest - SUFFIX_LENGTH - 1].rstrip("-")
    return f"{start}-{suffix}"


def is_label_value(value: str) -> bool:
    return bool(_LABEL_VALUE.match(value))


def check_label_value(what: str, value: str) -> str:
    """`value`, if a Kubernetes label can hold it (the owner and team labels must)."""
    if not is_label_value(value):
        raise ApiError(
            422,
            "invalid_label_value",
            f"the {what} {value!r} cannot be stored in a Kubernetes label (at most 63 "
            "letters, digits, '-', '_' and '.', starting and ending alphanumeric): servers "
            "cannot be created for it",
        )
    return value


def check_namespace(namespace: str) -> str:
    if not _NAMESPACE.match(namespace):
        raise ApiError(422, "invalid_namespace", f"{namespace!r} is not a namespace name")
    return namespace


def _runtime(request: ServeRequest, record: ModelRecord) -> Runtime:
    try:
        model_format = ModelFormat(record.format)
    except ValueError:
        raise ApiError(
            422,
            "unsupported_format",
            f"model {record.id} is in format {record.format!r}; only gguf and safetensors "
            "models can be served",
        ) from None
    runtime = Runtime(request.runtime) if request.runtime else DEFAULT_RUNTIME[model_format]
    if runtime is Runtime.LLAMACPP and model_format is not ModelFormat.GGUF:
        raise ApiError(
            422,
            "unsupported_format",
            f"runtime llamacpp only loads gguf models; {record.id} is {record.format}: "
            "use runtime vllm",
        )
    return runtime


def _check_nodes(request: ServeRequest, runtime: Runtime, gpus: int) -> None:
    """A model over several nodes runs vLLM over Ray, with GPUs on every node: said in the
    request's own words before the spec's checks would say it in the ModelServe's."""
    if request.nodes is None:
        return
    if runtime is not Runtime.VLLM:
        why = "" if request.runtime else ", the default for a gguf model"
        raise ApiError(
            422,
            "nodes_need_vllm",
            f"nodes spreads a model over several nodes with vLLM over Ray: only runtime "
            f"vllm takes it, and this server's runtime is {runtime.value}{why}",
        )
    if gpus < 1:
        raise ApiError(422, "gpus_required", "nodes needs gpus, the GPUs of each node: 1 or more")


def checked_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec`, if the ModelServe's own model takes it (the rules the CRD and the operator
    hold it to: tensor x pipeline, flags that nodes sets, …); else 422 with its reason."""
    try:
        ModelServeSpec.model_validate(spec)
    except ValidationError as error:
        reasons = "; ".join(_reason(detail) for detail in error.errors())
        raise ApiError(
            422,
            "invalid_server_spec",
            f"the ModelServe of this request would be refused: {reasons}. The request's "
            "nodes, gpus, parallelism and runtime_params are its spec.resources.nodes, "
            "spec.resources.gpus, spec.parallelism and spec.args",
        ) from None
    return spec


def _reason(detail: Any) -> str:
    """One of a ValidationError's errors in words: a model rule's own message as it wrote
    it, a field's with the field's place."""
    message = str(detail["msg"]).removeprefix("Value error, ")
    place = ".".join(str(part) for part in detail["loc"])
    return f"spec.{place}: {message}" if place else message


def build_modelserve(
    request: ServeRequest,
    record: ModelRecord,
    *,
    owner: str,
    team: str | None,
    namespace: str,
    suffix: str,
) -> dict[str, Any]:
    """The ModelServe that serves `record` as `request` asks, labelled for `owner`."""
    runtime = _runtime(request, record)
    gpus = request.gpus if request.gpus is not None else (1 if runtime is Runtime.VLLM else 0)
    _check_nodes(request, runtime, gpus)
    if runtime is Runtime.VLLM and gpus < 1:
        raise ApiError(422, "gpus_required", "runtime vllm needs at least one GPU per replica")
    if request.gpu_type is not None and gpus < 1:
        raise ApiError(422, "invalid_gpu_type", "gpu_type only applies with gpus of 1 or more")
    labels = {OWNER_LABEL: check_label_value("user name", owner)}
    # The version it runs (the registry's id): set-active rolls it to another.
    annotations = {MODEL_VERSION_ANNOTATION: record.id}
    if team is not None:
        labels[TEAM_LABEL] = check_label_value("team", team)
    resources: dict[str, Any] = {"gpus": gpus}
    if request.gpu_type is not None:
        resources["gpuType"] = request.gpu_type
    if request.nodes is not None:
        resources["nodes"] = request.nodes
    spec: dict[str, Any] = {
        "runtime": runtime.value,
        "model": {
            "uri": record.uri,
            "modelId": record.id,
            "format": record.format,
            "servedName": request.served_name or record.name,
        },
        "replicas": request.replicas,
        "resources": resources,
        "args": request.args(),
    }
    if request.parallelism is not None:
        spec["parallelism"] = request.parallelism.model_dump(by_alias=True)
    longest = MAX_NAME if request.nodes is None else MAX_GROUP_NAME
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": server_name(record.name, suffix, longest),
            "namespace": check_namespace(namespace),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": checked_spec(spec),
    }


class ServerStatus(BaseModel):
    """One server (a ModelServe) as `GET /status` shows it."""

    server_id: str = Field(description="the ModelServe's UID: the id in /status/{id}, /stop/{id}")
    name: str
    namespace: str
    owner: str | None
    team: str | None
    model: str | None = Field(description="the served name: `model` in OpenAI requests")
    model_id: str | None
    runtime: str
    replicas: int
    ready_replicas: int
    nodes: int | None = Field(
        default=None,
        description="the nodes each replica spans, a group of pods (spec.resources.nodes); "
        "null for one pod per replica",
    )
    status: str = Field(description="Pending, Deploying, Ready, Degraded, Failed or Stopping")
    message: str
    endpoint: str = Field(description="the OpenAI base URL of this server, through the ingress")
    route: str
    created: str | None
    model_version: str | None = Field(
        default=None,
        description="the registry version of the model every replica ran when the server "
        "was last fully Ready (status.model); before that, the version its spec names",
    )
    rollout: RolloutView | None = Field(
        default=None, description="the latest change of the server's model (set-active)"
    )
    desired_replicas: int | None = Field(
        default=None,
        description="the replicas the operator runs or starts now (status.desiredReplicas: "
        "spec.replicas, or the autoscaler's choice); null before its first status",
    )
    state: str | None = Field(
        default=None,
        description="loaded, loading, sleeping or unavailable: as /v1/models says of its "
        "model, for this server",
    )
    conditions: list[ConditionView] = Field(
        default_factory=list, description="status.conditions, as the operator wrote them"
    )


class ConditionView(BaseModel):
    """One of the ModelServe's status.conditions (Kubernetes' standard condition)."""

    type: str
    status: str = Field(description="True, False or Unknown")
    reason: str
    message: str
    last_transition_time: str | None


class ScaleRequest(BaseModel):
    """The body of `POST /scale/{server_id}`: the replicas to run (the CRD's bounds)."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(ge=0, le=MAX_REPLICAS, description="0 stops the pods, keeps the server")


class RolloutView(BaseModel):
    """status.rollout, for people and scripts: one change of a server's model."""

    id: str = Field(description="the registry's history entry of the change")
    phase: str = Field(description="Progressing, Complete, RolledBack or Superseded")
    from_version: str | None
    from_uri: str
    to_version: str | None
    to_uri: str
    reason: str = Field(
        description="why it was rolled back: FetchFailed, ServerFailed, DeadlineExceeded, "
        "NotRecorded"
    )
    message: str
    started_at: str
    finished_at: str | None

    @classmethod
    def of(cls, rollout: Rollout | None) -> RolloutView | None:
        if rollout is None:
            return None
        return cls(
            id=rollout.id,
            phase=rollout.phase.value,
            from_version=rollout.source.version,
            from_uri=rollout.source.uri,
            to_version=rollout.target.version,
            to_uri=rollout.target.uri,
            reason=rollout.reason,
            message=rollout.message,
            started_at=rollout.started_at,
            finished_at=rollout.finished_at,
        )


def owner_scope(claims: Claims) -> str | None:
    """Whose servers the caller sees and changes: their own, or (admins) everyone's."""
    return None if claims.is_admin else claims.sub


def route(server_id: str) -> str:
    """The path under which the ingress exposes a server (the operator's route prefix)."""
    return f"/{server_id}/"


def endpoint(server_id: str, ingress_url: str | None) -> str:
    """The server's OpenAI base: the ingress URL and its route (only the path without one)."""
    return f"{(ingress_url or '').rstrip('/')}{route(server_id)}v1"


def conditions(status: dict[str, Any]) -> list[ConditionView]:
    """status.conditions, those that name a type."""
    found = status.get("conditions")
    return [
        ConditionView(
            type=str(c["type"]),
            status=str(c.get("status") or "Unknown"),
            reason=str(c.get("reason") or ""),
            message=str(c.get("message") or ""),
            last_transition_time=c.get("lastTransitionTime") or None,
        )
        for c in (found if isinstance(found, list) else [])
        if isinstance(c, dict) and c.get("type")
    ]


def scale_refusal(body: dict[str, Any]) -> ApiError | None:
    """Why the server's replicas cannot be set by hand, if they cannot (409)."""
    metadata, spec = body["metadata"], body.get("spec") or {}
    name = f"{metadata['namespace']}/{metadata['name']}"
    if metadata.get("deletionTimestamp"):
        return ApiError(409, "server_stopping", f"{name} is being deleted")
    if spec.get("runtime") == Runtime.EXTERNAL.value:
        return ApiError(
            409, "server_not_scalable", f"{name} runs outside the cluster: it has no replicas"
        )
    autoscaling = spec.get("autoscaling")
    if isinstance(autoscaling, dict):
        low, high = autoscaling.get("minReplicas", 0), autoscaling.get("maxReplicas", "?")
        return ApiError(
            409,
            "server_autoscaled",
            f"{name} is autoscaled: its replicas follow its requests between {low} and "
            f"{high} (spec.autoscaling)",
        )
    return None


def scaled(body: dict[str, Any], replicas: int) -> dict[str, Any]:
    """The ModelServe `body` with spec.replicas set (what a scale leaves)."""
    return {**body, "spec": {**(body.get("spec") or {}), "replicas": replicas}}


def server_status(
    body: dict[str, Any], *, ingress_url: str | None, state: str | None = None
) -> ServerStatus:
    """What `GET /status` says of the ModelServe object `body` (`state`: its loading
    state, which the route table knows)."""
    metadata = body["metadata"]
    labels = metadata.get("labels") or {}
    spec = body.get("spec") or {}
    model = spec.get("model") or {}
    status = body.get("status") or {}
    server_id = status.get("serverId") or metadata["uid"]
    if metadata.get("deletionTimestamp"):
        phase, message = STOPPING, "being deleted"
    elif status.get("phase"):
        phase, message = status["phase"], status.get("message") or ""
    else:
        phase, message = NO_STATUS_YET, "waiting for the operator"
    return ServerStatus(
        server_id=server_id,
        name=metadata["name"],
        namespace=metadata["namespace"],
        owner=labels.get(OWNER_LABEL),
        team=labels.get(TEAM_LABEL),
        model=model.get("servedName") or metadata["name"],
        model_id=model.get("modelId"),
        runtime=spec.get("runtime", ""),
        replicas=spec.get("replicas", 1),
        ready_replicas=status.get("readyReplicas", 0),
        nodes=_count((spec.get("resources") or {}).get("nodes")),
        status=phase,
        message=message,
        endpoint=endpoint(server_id, ingress_url),
        route=status.get("route") or route(server_id),
        created=metadata.get("creationTimestamp"),
        model_version=_version(metadata, status),
        rollout=RolloutView.of(Rollout.from_status(status)),
        desired_replicas=_count(status.get("desiredReplicas")),
        state=state,
        conditions=conditions(status),
    )


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _version(metadata: dict[str, Any], status: dict[str, Any]) -> str | None:
    running = running_model(status)
    if running is not None:
        return running.version
    return (metadata.get("annotations") or {}).get(MODEL_VERSION_ANNOTATION)
