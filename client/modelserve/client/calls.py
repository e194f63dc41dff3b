"""The gateway's calls as data: each builder returns a `Call` (method, path, query, JSON
body) with the parser of its answer. Pure: the sync and async clients only send them
(`answer` turns what came back into the typed answer or a `ModelServeError`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import TypeAdapter, ValidationError

from modelserve.client.answers import (
    Activation,
    ActiveModel,
    ApiKey,
    ApiKeyCreated,
    ChatChunk,
    ChatCompletion,
    GpuStats,
    Health,
    HistoryEntry,
    Info,
    Logs,
    Me,
    ModelRecord,
    PowerProfile,
    Registration,
    Server,
    SystemStats,
    Token,
    Upload,
    Version,
)
from modelserve.client.errors import ModelServeError, error_of

T = TypeVar("T")
Query = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    query: Query = ()
    body: Mapping[str, Any] | None = field(default=None)


def path_segment(value: str) -> str:
    """A path segment: an id with `/` or `?` in it must not become another route."""
    return quote(value, safe="")


def query_of(**values: str | int | Sequence[str] | None) -> Query:
    pairs: list[tuple[str, str]] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, str | int):
            pairs.append((key, str(value)))
        else:
            pairs.extend((key, str(item)) for item in value)
    return tuple(pairs)


def list_of(kind: type[T]) -> Callable[[Any], list[T]]:
    adapter = TypeAdapter(list[kind])  # type: ignore[valid-type]

    def parse(body: Any) -> list[T]:
        parsed: list[T] = adapter.validate_python(body)
        return parsed

    return parse


def answer(call: Call[T], status: int, content: bytes) -> T:
    """The typed answer of `call`, or the platform's refusal as a ModelServeError."""
    if status >= 400:
        raise error_of(status, content)
    try:
        return call.parse(json.loads(content) if content else None)
    except (ValueError, ValidationError) as error:
        raise ModelServeError(
            "unexpected_answer", f"{call.method} {call.path}: {error}", status
        ) from error


# --- health, facts, telemetry -------------------------------------------------------------


def health() -> Call[Health]:
    return Call("GET", "/health", Health.model_validate)


def info() -> Call[Info]:
    return Call("GET", "/info", Info.model_validate)


def version() -> Call[Version]:
    return Call("GET", "/version", Version.model_validate)


def gpu_stats() -> Call[GpuStats]:
    return Call("GET", "/gpu", GpuStats.model_validate)


def system_stats() -> Call[SystemStats]:
    return Call("GET", "/system", SystemStats.model_validate)


def logs(
    component: str,
    lines: int = 100,
    since_seconds: int | None = None,
    container: str | None = None,
) -> Call[Logs]:
    query = query_of(lines=lines, since_seconds=since_seconds, container=container)
    return Call("GET", f"/logs/{path_segment(component)}", Logs.model_validate, query)


def power_profile() -> Call[PowerProfile]:
    return Call("GET", "/settings/power_profile", PowerProfile.model_validate)


def set_power_profile(profile: str) -> Call[PowerProfile]:
    return Call(
        "POST", "/settings/power_profile", PowerProfile.model_validate, body={"profile": profile}
    )


# --- models and the registry ----------------------------------------------------------


def list_models(
    *,
    name: str | None = None,
    tag: str | Sequence[str] | None = None,
    origin: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> Call[list[ModelRecord]]:
    query = query_of(name=name, tag=tag, origin=origin, limit=limit, offset=offset)
    return Call("GET", "/models", list_of(ModelRecord), query)


def register_model(
    model_id: str,
    *,
    source: str | None = None,
    tags: str | Sequence[str] | None = None,
    name: str | None = None,
    uri: str | None = None,
    upload_id: str | None = None,
) -> Call[Registration]:
    if (uri is None) == (upload_id is None):
        raise ValueError("register a checkpoint by exactly one of uri and an upload")
    body: dict[str, Any] = {"id": model_id}
    if isinstance(tags, str) or tags is None:
        listed: str | list[str] | None = tags
    else:
        listed = list(tags)
    optional = {"name": name, "source": source, "tags": listed, "uri": uri, "upload_id": upload_id}
    body.update({key: value for key, value in optional.items() if value is not None})
    return Call("POST", "/models/register", Registration.model_validate, body=body)


def registration(model_id: str) -> Call[Registration]:
    return Call(
        "GET", f"/models/registrations/{path_segment(model_id)}", Registration.model_validate
    )


def create_upload(filename: str, size: int) -> Call[Upload]:
    body = {"filename": filename, "size": size}
    return Call("POST", "/models/uploads", Upload.model_validate, body=body)


def complete_upload(upload_id: str, etags: Mapping[int, str]) -> Call[Upload]:
    parts = [{"part_number": n, "etag": etags[n]} for n in sorted(etags)]
    path = f"/models/uploads/{path_segment(upload_id)}/complete"
    return Call("POST", path, Upload.model_validate, body={"parts": parts})


def set_active_model(model_id: str, *, reason: str | None = None) -> Call[Activation]:
    body: dict[str, Any] = {"id": model_id}
    if reason is not None:
        body["reason"] = reason
    return Call("POST", "/models/set_active", Activation.model_validate, body=body)


def active_models(*, name: str | None = None) -> Call[list[ActiveModel]]:
    return Call("GET", "/models/active", list_of(ActiveModel), query_of(name=name))


def history(
    *, name: str | None = None, limit: int | None = None, offset: int | None = None
) -> Call[list[HistoryEntry]]:
    query = query_of(name=name, limit=limit, offset=offset)
    return Call("GET", "/models/history", list_of(HistoryEntry), query)


# --- servers --------------------------------------------------------------------------


def serve(
    *, model_name: str | None = None, model_uuid: str | None = None, **fields: Any
) -> Call[Server]:
    """POST /serve; `fields` are the body's others (`replicas`, `gpus`, `runtime`,
    `served_name`, `runtime_params`, …: docs/api.md)."""
    if model_name is None and model_uuid is None:
        raise ValueError("name the model to serve: model_name or model_uuid")
    body = {"model_name": model_name, "model_uuid": model_uuid, **fields}
    return Call(
        "POST",
        "/serve",
        Server.model_validate,
        body={key: value for key, value in body.items() if value is not None},
    )


def servers() -> Call[list[Server]]:
    return Call("GET", "/status", list_of(Server))


def server(server_id: str) -> Call[Server]:
    return Call("GET", f"/status/{path_segment(server_id)}", Server.model_validate)


def stop(server_id: str) -> Call[Server]:
    return Call("DELETE", f"/stop/{path_segment(server_id)}", Server.model_validate)


# --- the OpenAI-compatible API --------------------------------------------------------


def chat(model: str, messages: Sequence[Mapping[str, Any]], **params: Any) -> Call[ChatCompletion]:
    if params.get("stream"):
        raise ValueError("chat answers whole completions: chat_stream streams them")
    body = {"model": model, "messages": [dict(message) for message in messages], **params}
    return Call("POST", "/v1/chat/completions", ChatCompletion.model_validate, body=body)


def chat_stream(
    model: str, messages: Sequence[Mapping[str, Any]], **params: Any
) -> Call[ChatChunk]:
    """The streamed chat completion: each server-sent event's data is one `ChatChunk`
    (the clients read them with chunks.ChunkReader)."""
    body = {
        "model": model,
        "messages": [dict(message) for message in messages],
        **params,
        "stream": True,
    }
    return Call("POST", "/v1/chat/completions", ChatChunk.model_validate, body=body)


# --- signing in and API keys ----------------------------------------------------------


def sign_in(username: str, password: str) -> Call[Token]:
    body = {"username": username, "password": password}
    return Call("POST", "/auth/token", Token.model_validate, body=body)


def me() -> Call[Me]:
    return Call("GET", "/auth/me", Me.model_validate)


def create_key(name: str, *, expires_in_days: int | None = None) -> Call[ApiKeyCreated]:
    body: dict[str, Any] = {"name": name}
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    return Call("POST", "/auth/keys", ApiKeyCreated.model_validate, body=body)


def list_keys(*, limit: int | None = None, offset: int | None = None) -> Call[list[ApiKey]]:
    return Call("GET", "/auth/keys", list_of(ApiKey), query_of(limit=limit, offset=offset))


def revoke_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/auth/keys/{path_segment(key_id)}", _nothing)


def delete_upload(upload_id: str) -> Call[None]:
    return Call("DELETE", f"/models/uploads/{path_segment(upload_id)}", _nothing)


def _nothing(_: Any) -> None:
    return None
