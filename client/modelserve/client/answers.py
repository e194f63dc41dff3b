"""Typed answers of the gateway. Each names the fields scripts rely on and lets every
other field through (`extra="allow"`): a newer platform's additions are kept, readable
as attributes and in `model_dump()`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class HealthGpu(Answer):
    available: bool | None = None
    device_count: int | None = None
    device_name: str | None = None
    device_names: list[str] = []


class Health(Answer):
    """GET /health."""

    status: str
    active_model: str | None = None
    active_models: list[str] = []
    loaded_models: list[str] = []
    available_models: list[str] = []
    worker_busy: bool | None = None
    gpu: HealthGpu | None = None


class Info(Answer):
    """GET /info: the settings that matter to a caller."""

    api_version: str | None = None
    platform_version: str | None = None


class Version(Answer):
    """GET /version."""

    api_version: str | None = None
    platform_version: str | None = None
    python_version: str | None = None
    kubernetes_version: str | None = None
    # "unavailable" when the gateway could not read them.
    runtime_images: list[dict[str, Any]] | str = []


class GpuTotals(Answer):
    nodes: int = 0
    capacity: int = 0
    allocatable: int = 0
    allocated: int = 0


class GpuStats(Answer):
    """GET /gpu: GPU nodes and types, allocations, live figures."""

    totals: GpuTotals
    types: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    gpus: list[dict[str, Any]] = []


class SystemStats(Answer):
    """GET /system."""

    nodes: list[dict[str, Any]] = []
    gateway_host: dict[str, Any] | None = None
    unavailable: dict[str, Any] = {}


class PodLog(Answer):
    namespace: str
    pod: str
    container: str
    lines: list[str]


class Logs(Answer):
    """GET /logs/{component}."""

    component: str
    kind: str
    pods: list[PodLog] = []


class PowerProfile(Answer):
    """GET and POST /settings/power_profile."""

    current: str
    chosen: bool | None = None
    profiles: dict[str, dict[str, Any]] = {}
    applied: list[dict[str, Any]] = []


class ModelRecord(Answer):
    """A model in the platform store (downloaded or registered): GET /models."""

    id: str
    name: str
    format: str | None = None
    uri: str | None = None
    origin: str = "download"
    tags: list[str] = []
    size: int | None = None
    sha256: str | None = None


class JobError(Answer):
    code: str | None = None
    message: str | None = None


class Registration(Answer):
    """A registration's job: POST /models/register, GET /models/registrations/{id}."""

    model_id: str
    kind: str
    state: str  # queued, transferring, verifying, ready, failed, cancelled
    bytes_done: int = 0
    bytes_total: int | None = None
    progress: float | None = None
    error: JobError | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("ready", "failed", "cancelled")


class UploadPart(Answer):
    part_number: int
    url: str


class Upload(Answer):
    """POST /models/uploads and .../complete: one `url` to PUT to, or `parts`."""

    upload_id: str
    filename: str
    size: int
    uri: str
    state: str  # open, complete, registered
    url: str | None = None
    part_size: int | None = None
    parts: list[UploadPart] = []


class VersionRef(Answer):
    id: str
    uri: str | None = None


class ServerVersion(Answer):
    """A server of a model name and the version it runs."""

    server_id: str
    namespace: str
    name: str
    version: str | None = None
    wanted_version: str | None = None
    rollout: dict[str, Any] | None = None
    error: str | None = None


class Activation(Answer):
    """POST /models/set_active."""

    name: str
    id: str
    uri: str
    previous: VersionRef | None = None
    history_id: int
    changed: bool
    servers: list[ServerVersion] = []


class ActiveModel(Answer):
    """GET /models/active: one name's active version and its servers."""

    name: str
    id: str
    uri: str
    set_by: str
    set_at: dt.datetime
    history_id: int
    last_rollback: dict[str, Any] | None = None
    servers: list[ServerVersion] = []


class HistoryEntry(Answer):
    """GET /models/history: one change of a name's active version."""

    id: int
    name: str
    from_id: str | None = None
    to_id: str | None = None
    actor: str
    action: str  # set_active, automatic_rollback
    reason: str | None = None
    at: dt.datetime


class Server(Answer):
    """A server: POST /serve, GET /status, DELETE /stop."""

    server_id: str
    name: str
    namespace: str
    model: str | None = None
    model_id: str | None = None
    runtime: str
    replicas: int
    ready_replicas: int
    status: str
    message: str = ""
    endpoint: str | None = None
    model_version: str | None = None
    # The pods of each replica's group, for a model over several nodes; None: one pod.
    nodes: int | None = None


class ChatMessage(Answer):
    role: str
    content: str | None = None


class ChatChoice(Answer):
    index: int
    message: ChatMessage
    finish_reason: str | None = None


class ChatCompletion(Answer):
    """POST /v1/chat/completions (not streamed)."""

    id: str
    object: str
    model: str
    choices: list[ChatChoice]
    usage: dict[str, Any] | None = None

    @property
    def content(self) -> str:
        """The first choice's text."""
        return self.choices[0].message.content or "" if self.choices else ""


class Token(Answer):
    """POST /auth/token: a platform JWT and its lifetime in seconds."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int


class Me(Answer):
    """GET /auth/me: who the token stands for."""

    username: str
    roles: list[str] = []
    teams: list[str] = []
    expires_at: dt.datetime
    api_key: str | None = None


class ApiKey(Answer):
    """One of one's API keys, as GET /auth/keys lists it (never the key itself)."""

    id: str
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime | None = None


class ApiKeyCreated(ApiKey):
    """POST /auth/keys: the new key, whole, in this answer only (the gateway keeps a hash)."""

    key: str


class ChunkDelta(Answer):
    role: str | None = None
    content: str | None = None


class ChunkChoice(Answer):
    index: int = 0
    delta: ChunkDelta = ChunkDelta()
    finish_reason: str | None = None


class ChatChunk(Answer):
    """One event of a streamed POST /v1/chat/completions (`chat.completion.chunk`)."""

    id: str | None = None
    model: str | None = None
    choices: list[ChunkChoice] = []
    usage: dict[str, Any] | None = None

    @property
    def content(self) -> str:
        """The first choice's new text ('' for a chunk without any)."""
        return (self.choices[0].delta.content or "") if self.choices else ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None
