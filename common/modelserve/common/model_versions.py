"""The registry's answers about active versions, as the download service gives them and
the gateway reads them (one shape for both sides of the wire)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel


class VersionRef(BaseModel):
    id: str
    uri: str | None


class HistoryEntry(BaseModel):
    """One change of a model name's active version."""

    id: int
    name: str
    from_id: str | None
    to_id: str | None
    actor: str
    action: str  # set_active | automatic_rollback
    reason: str | None
    message: str | None
    rollout_id: int | None
    server: str | None
    server_uid: str | None
    pointer_moved: bool | None
    at: dt.datetime


class SetActiveAnswer(BaseModel):
    """POST /models/set_active: the name's active version now, the one before, and the
    history entry of the change (`changed` false: it was active already, and
    `history_id` is the set_active that made it so)."""

    name: str
    id: str
    uri: str
    previous: VersionRef | None
    history_id: int
    changed: bool


class LastRollback(BaseModel):
    history_id: int
    rollout_id: int | None
    server: str | None
    failed_id: str | None
    restored_id: str | None
    reason: str | None
    message: str | None
    pointer_moved: bool | None
    at: dt.datetime


class ActiveVersion(BaseModel):
    """GET /models/active: a model name's active version, and its latest automatic
    rollback."""

    name: str
    id: str
    uri: str
    set_by: str
    set_at: dt.datetime
    history_id: int
    last_rollback: LastRollback | None


class RollbackAnswer(BaseModel):
    """POST /models/rollbacks."""

    entry: HistoryEntry
    pointer_moved: bool
    duplicate: bool  # reported before: the first record, nothing moved now
