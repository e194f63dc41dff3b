"""Active versions: set one (POST /models/set_active), read them (GET /models/active),
their history (GET /models/history), and automatic rollbacks that the platform reports
(POST /models/rollbacks)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from modelserve.common.auth import Caller
from modelserve.common.errors import ApiError
from modelserve.common.model_versions import (
    ActiveVersion,
    HistoryEntry,
    RollbackAnswer,
    SetActiveAnswer,
)
from modelserve.download.access import visible_to
from modelserve.download.deps import VersionsDep
from modelserve.download.sources import TEXT_PATTERN, is_model_id, printable
from modelserve.download.versions import (
    NameNotOpen,
    NotTheActorsServer,
    NotThisRollout,
    RolloutNotFound,
    VersionNotFound,
)

router = APIRouter(tags=["registry"])


class SetActive(BaseModel):
    id: str = Field(max_length=256, description="the version (model id) to make active")
    reason: str | None = Field(default=None, max_length=1024, pattern=TEXT_PATTERN)


@router.post("/models/set_active")
async def set_active(body: SetActive, claims: Caller, versions: VersionsDep) -> SetActiveAnswer:
    """Make a ready version the active one of its model name. `changed` is false (and no
    history is written) when it is already."""
    try:
        if not is_model_id(body.id):
            raise VersionNotFound(body.id)
        return await versions.set_active(
            body.id, actor=claims.sub, who=visible_to(claims), reason=body.reason
        )
    except VersionNotFound as error:
        raise ApiError(
            404, "model_not_found", f"no ready model {body.id} in the platform store"
        ) from error
    except NameNotOpen as error:
        raise ApiError(
            403,
            "name_not_yours",
            f"the active version of {error} is one {claims.sub} cannot see",
        ) from error


@router.get("/models/active")
async def active_versions(
    claims: Caller,
    versions: VersionsDep,
    name: Annotated[str | None, Query(min_length=1, max_length=256, pattern=TEXT_PATTERN)] = None,
) -> list[ActiveVersion]:
    """The active version of each model name (or of `name`) the caller may see, with the
    name's latest automatic rollback."""
    return await versions.active(who=visible_to(claims), name=name)


@router.get("/models/history")
async def version_history(
    claims: Caller,
    versions: VersionsDep,
    response: Response,
    name: Annotated[str | None, Query(min_length=1, max_length=256, pattern=TEXT_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[HistoryEntry]:
    """Changes of active versions, newest first; X-Total-Count says how many in all."""
    entries, total = await versions.history(
        who=visible_to(claims), name=name, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return entries


class RollbackReport(BaseModel):
    """What the operator reports when a rollout failed on a server and it rolled back."""

    rollout_id: int = Field(ge=1, le=2**63 - 1, description="the set_active's history id")
    server: str = Field(min_length=1, max_length=512, pattern=TEXT_PATTERN, description="ns/name")
    server_uid: str = Field(min_length=1, max_length=128, pattern=TEXT_PATTERN)
    failed_id: str = Field(min_length=1, max_length=256, pattern=TEXT_PATTERN)
    restored_id: str | None = Field(default=None, max_length=256, pattern=TEXT_PATTERN)
    reason: str | None = Field(default=None, max_length=256, pattern=TEXT_PATTERN)
    message: str | None = Field(default=None, max_length=4096)
    server_owner: str | None = Field(
        default=None, max_length=253, pattern=TEXT_PATTERN, description="its owner label"
    )
    platform_server: bool = Field(default=False, description="in a platform namespace")


@router.post("/models/rollbacks", status_code=201)
async def report_rollback(
    body: RollbackReport, claims: Caller, versions: VersionsDep, response: Response
) -> RollbackAnswer:
    """Platform services only. Recorded once per (rollout_id, server_uid): a repeat
    answers 200 with the first record (`duplicate`). The pointer moves back to
    `restored_id` only if it still points at `failed_id`."""
    if not claims.is_service:
        raise ApiError(403, "service_only", "only platform services report rollbacks")
    try:
        answer = await versions.rollback(
            rollout_id=body.rollout_id,
            server=body.server,
            server_uid=body.server_uid,
            failed_id=body.failed_id,
            restored_id=body.restored_id,
            reason=body.reason,
            message=printable(body.message, limit=4096),
            server_owner=body.server_owner,
            platform_server=body.platform_server,
        )
    except RolloutNotFound as error:
        raise ApiError(
            404, "rollout_not_found", f"no set_active {body.rollout_id} in the history"
        ) from error
    except NotThisRollout as error:
        raise ApiError(422, "not_this_rollout", str(error)) from error
    except NotTheActorsServer as error:
        raise ApiError(409, "not_the_actors_server", str(error)) from error
    if answer.duplicate:
        response.status_code = 200
    return answer
