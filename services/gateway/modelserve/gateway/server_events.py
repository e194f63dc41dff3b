"""A server's Kubernetes Events, as `GET /status/{id}/events` shows them (pure functions).

A server's events are those of its ModelServe (the operator's phases, rollouts and
scaling; selected by uid, so not those of an older server of the same name) and of the
children its Deployment makes: the Deployment (named as the ModelServe), its ReplicaSets
(`<name>-<hash>`) and their pods (`<name>-<hash>-<suffix>`). The names are matched
exactly by shape: the pods of `llama-x7k2p-2` are not those of `llama-x7k2p`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from modelserve.common.timestamps import epoch_seconds

DEFAULT_EVENTS = 50
MAX_EVENTS = 200
# A pod-template hash and a pod's random suffix: letters and digits, never a '-'.
_PART = "[a-z0-9]+"


class EventView(BaseModel):
    """One Kubernetes Event about a server or its pods."""

    type: str = Field(description="Normal or Warning")
    reason: str
    message: str
    object: str = Field(description="what it is about: `ModelServe/<name>`, `Pod/<name>`, …")
    count: int = Field(description="how many times it happened")
    first_seen: str | None
    last_seen: str | None
    source: str = Field(description="who reported it: the operator, the scheduler, …")


def event_selectors(uid: str, name: str) -> list[str]:
    """The field selectors of the event lists that hold a server's events: one per kind
    of object (ReplicaSets' and pods' names are then matched by `is_server_event`)."""
    return [
        f"involvedObject.uid={uid}",
        f"involvedObject.kind=Deployment,involvedObject.name={name}",
        "involvedObject.kind=ReplicaSet",
        "involvedObject.kind=Pod",
    ]


def is_server_event(event: Mapping[str, Any], uid: str, name: str) -> bool:
    """Whether `event` is about the server `name` (ModelServe `uid`) or its children."""
    involved = event.get("involvedObject") or {}
    kind, involved_name = involved.get("kind"), str(involved.get("name") or "")
    if involved.get("uid") == uid:
        return True
    if kind == "Deployment":
        return involved_name == name
    prefix = re.escape(name)
    if kind == "ReplicaSet":
        return re.fullmatch(f"{prefix}-{_PART}", involved_name) is not None
    if kind == "Pod":
        return re.fullmatch(f"{prefix}-{_PART}-{_PART}", involved_name) is not None
    return False


def _first(*values: object) -> str | None:
    return next((value for value in values if isinstance(value, str) and value), None)


def last_seen(event: Mapping[str, Any]) -> str | None:
    """When it last happened: events.k8s.io's series, or core/v1's lastTimestamp, or when
    it was first reported."""
    series = event.get("series") or {}
    metadata = event.get("metadata") or {}
    return _first(
        series.get("lastObservedTime"),
        event.get("lastTimestamp"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        metadata.get("creationTimestamp"),
    )


def event_view(event: Mapping[str, Any]) -> EventView:
    involved = event.get("involvedObject") or {}
    series = event.get("series") or {}
    source = event.get("source") or {}
    metadata = event.get("metadata") or {}
    count = series.get("count") or event.get("count") or 1
    return EventView(
        type=str(event.get("type") or "Normal"),
        reason=str(event.get("reason") or ""),
        message=str(event.get("message") or ""),
        object=f"{involved.get('kind') or '?'}/{involved.get('name') or '?'}",
        count=count if isinstance(count, int) else 1,
        first_seen=_first(
            event.get("firstTimestamp"), event.get("eventTime"), metadata.get("creationTimestamp")
        ),
        last_seen=last_seen(event),
        source=str(
            event.get("reportingComponent")
            or source.get("component")
            or event.get("reportingController")
            or ""
        ),
    )


def server_events(
    events: Iterable[Mapping[str, Any]], *, uid: str, name: str, limit: int
) -> list[EventView]:
    """The newest `limit` of `events` (several lists, which may overlap) that are about
    the server, newest first."""
    unique: dict[str, Mapping[str, Any]] = {}
    for event in events:
        if is_server_event(event, uid, name):
            key = str((event.get("metadata") or {}).get("uid") or id(event))
            unique[key] = event
    ordered = sorted(
        unique.values(), key=lambda event: epoch_seconds(last_seen(event)) or 0.0, reverse=True
    )
    return [event_view(event) for event in ordered[:limit]]
