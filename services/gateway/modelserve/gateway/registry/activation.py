"""POST /models/set_active and GET /models/active (seed 003): a model name's active
version, and the servers that follow it.

`set_active` asks the registry (the download service, as the caller: it judges whether
they may see the version) to make the version active, which it records in the history;
then every server of the caller (an admin's: every server) whose served name is the
model's name and that runs another version is pointed at it (spec.model.uri, and the
annotations naming the version and the history entry). The operator rolls each one out
replica by replica and puts the previous version back by itself if the new one does not
become Ready (`modelserve.operator.rollouts`); `GET /models/active` shows where each
server stands, and the registry's history the rollback.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from modelserve.common.errors import ApiError
from modelserve.common.model_versions import ActiveVersion, SetActiveAnswer
from modelserve.common.rollouts import (
    MODEL_VERSION_ANNOTATION,
    ROLLOUT_ANNOTATION,
    Rollout,
    running_model,
)
from modelserve.gateway.auth import Caller, CallerAuthorization
from modelserve.gateway.deps import RegistryDep, ServersDep
from modelserve.gateway.kubeservers import ServerStore
from modelserve.gateway.servers import RolloutView, owner_scope

router = APIRouter(tags=["registry"])
_TEXT = r"^[^\x00-\x1f\x7f]*$"


class SetActiveRequest(BaseModel):
    id: str = Field(min_length=1, max_length=256, description="the version to make active")
    reason: str | None = Field(
        default=None, max_length=1024, pattern=_TEXT, description="kept in the history"
    )


class ServerVersion(BaseModel):
    """A server of the model name, and the version it runs."""

    server_id: str
    namespace: str
    name: str
    version: str | None = Field(
        description="the version every replica ran when the server was last fully Ready"
    )
    wanted_version: str | None = Field(description="the version its spec names")
    rollout: RolloutView | None
    error: str | None = Field(default=None, description="why set_active could not change it")


class Activation(SetActiveAnswer):
    """POST /models/set_active: the registry's answer, and the servers pointed at the version."""

    servers: list[ServerVersion]


class ActiveModel(ActiveVersion):
    """GET /models/active: a name's active version, and where its servers stand."""

    servers: list[ServerVersion]


def _server_version(item: dict[str, Any], error: str | None = None) -> ServerVersion:
    metadata, status = item["metadata"], item.get("status") or {}
    running = running_model(status)
    annotations = metadata.get("annotations") or {}
    return ServerVersion(
        server_id=status.get("serverId") or metadata["uid"],
        namespace=metadata["namespace"],
        name=metadata["name"],
        version=running.version if running else None,
        wanted_version=annotations.get(MODEL_VERSION_ANNOTATION),
        rollout=RolloutView.of(Rollout.from_status(status)),
        error=error,
    )


def serves(item: dict[str, Any], name: str) -> bool:
    """Whether the ModelServe `item` serves the model name `name` (and is not going)."""
    metadata, spec = item["metadata"], item.get("spec") or {}
    served = (spec.get("model") or {}).get("servedName") or metadata["name"]
    return served == name and not metadata.get("deletionTimestamp")


async def _servers_of(servers: ServerStore, owner: str | None, name: str) -> list[Any]:
    return [item for item in await servers.list(owner) if serves(item, name)]


@router.post("/models/set_active")
async def set_active(
    body: SetActiveRequest,
    authorization: CallerAuthorization,
    claims: Caller,
    registry: RegistryDep,
    servers: ServersDep,
) -> Activation:
    """Make version `id` the active one of its model name and roll every server of the
    caller that serves that name to it. Setting an earlier version active is the rollback."""
    answer = await registry.set_active(authorization, body.id, reason=body.reason)
    followers = []
    for item in await _servers_of(servers, owner_scope(claims), answer.name):
        spec_uri = ((item.get("spec") or {}).get("model") or {}).get("uri")
        annotations = item["metadata"].get("annotations") or {}
        # Already this activation's: nothing to do. The same uri under an earlier one (a
        # server rolled back from this version, whose spec still names it) is patched with
        # this activation's rollout id, which the operator rolls out again.
        if spec_uri == answer.uri and annotations.get(ROLLOUT_ANNOTATION) == str(answer.history_id):
            followers.append(_server_version(item))
            continue
        try:
            changed = await servers.set_model(
                item, uri=answer.uri, model_id=answer.id, rollout_id=str(answer.history_id)
            )
        except ApiError as error:  # refused (e.g. by the contract) or gone: said per server
            followers.append(_server_version(item, f"{error.code}: {error.detail}"))
            continue
        followers.append(_server_version(changed))
    return Activation(**answer.model_dump(), servers=followers)


@router.get("/models/active")
async def active(
    authorization: CallerAuthorization,
    claims: Caller,
    registry: RegistryDep,
    servers: ServersDep,
    name: Annotated[str | None, Query(min_length=1, max_length=256, pattern=_TEXT)] = None,
) -> list[ActiveModel]:
    """The active version of each model name the caller may see (or of `name`), its last
    automatic rollback, and the caller's servers of that name with the version each runs."""
    found = await registry.active(authorization, name)
    items = await servers.list(owner_scope(claims)) if found else []
    return [
        ActiveModel(
            **version.model_dump(),
            servers=[_server_version(item) for item in items if serves(item, version.name)],
        )
        for version in found
    ]
