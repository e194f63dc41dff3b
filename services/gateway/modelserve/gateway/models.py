"""The models a caller may serve: the download service's records, narrowed by their contract.

The download service lists every model in the platform store (`GET /models`), downloaded
or registered; the gateway asks it with its own service token (`registry.client`). A
contract's `models` patterns (fnmatch, as the contract service matches them) hold against
a record's name: the contract service checks them against a server's served name, which
is the record's name unless a request names another, so a model listed here is one its
decision will let through.

A downloaded model is the platform's: anyone whose contract allows it may serve it. A
registered version is its registrant's (a trainer's checkpoint): only they, admins and
services see it here or serve it, as the download service shows it only to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims
from modelserve.gateway.contracts import ContractClient
from modelserve.gateway.registry.client import ModelRecord, RegistryClient

__all__ = ["ModelRecord", "allowed", "find_model", "usable_models"]


def visible(record: ModelRecord, claims: Claims) -> bool:
    """Whether `claims` may see `record`: a download, or a version they registered."""
    if record.origin != "register" or claims.is_admin or claims.is_service:
        return True
    return record.requested_by == claims.sub


def allowed(record: ModelRecord, allowlists: Iterable[Sequence[str]]) -> bool:
    """Whether every allowlist has a pattern that matches the record's name."""
    return all(any(fnmatchcase(record.name, p) for p in patterns) for patterns in allowlists)


async def usable_models(
    claims: Claims,
    registry: RegistryClient,
    contracts: ContractClient | None,
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    origin: str | None = None,
) -> list[ModelRecord]:
    """The records `claims` may serve (those that match `name`, every tag and `origin`):
    all of them for admins or without a contract service."""
    found = await registry.records(name=name, tags=tags, origin=origin)
    records = [record for record in found if visible(record, claims)]
    if contracts is None or claims.is_admin:
        return records
    allowlists = await contracts.model_allowlists(claims)
    return [record for record in records if allowed(record, allowlists)]


async def find_model(
    claims: Claims,
    registry: RegistryClient,
    contracts: ContractClient | None,
    *,
    model_uuid: str | None,
    model_name: str | None,
) -> ModelRecord:
    """The record a `POST /serve` names: by id (model_uuid), else by name (its active
    version, else its oldest). 404 when there is none; 403 when the caller's contract does
    not allow it."""
    record: ModelRecord | None = None
    if model_uuid is not None:
        record = await registry.record(model_uuid)
    elif model_name is not None:
        active = await registry.active_version(model_name)
        if active is not None:
            record = await registry.record(active.id)
        if record is None or not visible(record, claims):
            records = await registry.records(name=model_name)
            record = next((r for r in records if visible(r, claims)), None)
    if record is None or not visible(record, claims):
        raise ApiError(
            404,
            "model_not_found",
            f"no model {model_uuid or model_name!r} in the platform store (download it first)",
        )
    if contracts is not None and not claims.is_admin:
        allowlists = await contracts.model_allowlists(claims)
        if not allowed(record, allowlists):
            raise ApiError(
                403, "model_not_allowed", f"{claims.sub} may not use model {record.name!r}"
            )
    return record
