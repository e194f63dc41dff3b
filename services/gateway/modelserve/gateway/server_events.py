"""A server's Kubernetes Events, as `GET /status/{id}/events` shows them (pure functions).

A server's events are those of its ModelServe (the operator's phases, rollouts and
scaling; selected by uid, so not those of an older server of the same name) and of the
children its workload makes, matched by name, exactly by shape:

- its Deployment (named as the ModelServe), its ReplicaSets (`<name>-<hash>`) and their
  pods (`<name>-<hash>-<suffix>`), the hash and suffix in the alphabet Kubernetes makes
  them of (`bcdfghjklmnpqrstvwxz2456789`; a suffix is 5 long);
- a server over several nodes (LeaderWorkerSet): its leaders' pods (`<name>-<group>`)
  and workers' (`<name>-<group>-<worker>`), by number.

A name of that shape may be another server's: `llama-2-0` is a worker of `llama` and
the leader of `llama-2`. Such a name is the server's only if no other ModelServe of its
namespace (`neighbours`) has a longer name it fits: the pods of `llama-x7k2p-2` are not
those of `llama-x7k2p`, and no tenant reads another's events by naming a server as a
prefix of theirs.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from modelserve.common.timestamps import epoch_seconds

DEFAULT_EVENTS = 50
MAX_EVENTS = 200
# The characters of a pod-template hash and of a pod's random suffix
# (k8s.io/apimachinery's rand.SafeEncodeString and rand.String).
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_HASH = f"{_SAFE}{{1,10}}"
_SUFFIX = f"{_SAFE}{{5}}"
_NUMBER = "(?:0|[1-9][0-9]*)"
# What follows `<name>-` in each kind of child's name.
_CHILD_NAMES = {
    "ReplicaSet": re.compile(_HASH),
    "Pod": re.compile(f"{_HASH}-{_SUFFIX}|{_NUMBER}|{_NUMBER}-{_NUMBER}"),
}


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


def _is_child(kind: str, involved: str, name: str) -> bool:
    """Whether an object of `kind` named `involved` has the shape of a child of `name`."""
    shape = _CHILD_NAMES.get(kind)
    return (
        shape is not None
        and involved.startswith(f"{name}-")
        and shape.fullmatch(involved, len(name) + 1) is not None
    )


def is_server_event(
    event: Mapping[str, Any], uid: str, name: str, neighbours: Collection[str] = ()
) -> bool:
    """Whether `event` is about the server `name` (ModelServe `uid`) or its children;
    `neighbours`: the names of the other ModelServes of its namespace."""
    involved = event.get("involvedObject") or {}
    kind, involved_name = str(involved.get("kind") or ""), str(involved.get("name") or "")
    if involved.get("uid") == uid:
        return True
    if kind == "Deployment":
        return involved_name == name
    if not _is_child(kind, involved_name, name):
        return False
    return not any(
        len(other) > len(name) and _is_child(kind, involved_name, other) for other in neighbours
    )


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
    events: Iterable[Mapping[str, Any]],
    *,
    uid: str,
    name: str,
    limit: int,
    neighbours: Collection[str] = (),
) -> list[EventView]:
    """The newest `limit` of `events` (several lists, which may overlap) that are about
    the server, newest first; `neighbours` as for `is_server_event`."""
    unique: dict[str, Mapping[str, Any]] = {}
    for event in events:
        if is_server_event(event, uid, name, neighbours):
            key = str((event.get("metadata") or {}).get("uid") or id(event))
            unique[key] = event
    ordered = sorted(
        unique.values(), key=lambda event: epoch_seconds(last_seen(event)) or 0.0, reverse=True
    )
    return [event_view(event) for event in ordered[:limit]]
