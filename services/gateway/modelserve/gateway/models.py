"""The models a caller may serve: the download service's records, narrowed by their contract.

The download service lists every model in the platform store (`GET /models`); the gateway
asks it with its own service token. A contract's `models` patterns (fnmatch, as the
contract service matches them) hold against a record's name: the contract service checks
them against a server's served name, which is the record's name unless a request names
another, so a model listed here is one its decision will let through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims, TokenSigner
from modelserve.gateway.contracts import SERVICE_NAME, ContractClient

# The ids the download service gives models (its check_model_id).
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ModelRecord(BaseModel):
    """A model in the platform store, as the download service records it. The fields the
    gateway reads are typed; the others (size, sha256, architecture, …) pass through."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    format: str
    uri: str


def _unavailable(detail: str) -> ApiError:
    return ApiError(503, "download_unavailable", f"the download service {detail}")


class ModelCatalog:
    """The download service's records, read with the gateway's service token. Without a
    download service there are none."""

    def __init__(self, url: str | None, http: httpx.AsyncClient, signer: TokenSigner) -> None:
        self._url = url.rstrip("/") if url else None
        self._http = http
        self._signer = signer

    async def _get(self, path: str) -> Any:
        assert self._url is not None
        headers = {"Authorization": f"Bearer {self._signer.service_token(SERVICE_NAME)}"}
        try:
            response = await self._http.get(f"{self._url}{path}", headers=headers)
        except httpx.HTTPError as error:
            raise _unavailable(f"cannot be reached: {error}") from error
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _unavailable(f"answered {response.status_code}: {response.text[:200]}")
        return response.json()

    async def records(self) -> list[ModelRecord]:
        if self._url is None:
            return []
        try:
            return [ModelRecord.model_validate(item) for item in await self._get("/models")]
        except (ValidationError, TypeError) as error:
            raise _unavailable(f"sent records the gateway cannot read: {error}") from error

    async def record(self, model_id: str) -> ModelRecord | None:
        if self._url is None:
            return None
        if not _MODEL_ID.match(model_id):
            return None  # the download service takes no other id: no need to ask
        found = await self._get(f"/models/{model_id}")
        try:
            return None if found is None else ModelRecord.model_validate(found)
        except ValidationError as error:
            raise _unavailable(f"sent a record the gateway cannot read: {error}") from error


def allowed(record: ModelRecord, allowlists: Iterable[Sequence[str]]) -> bool:
    """Whether every allowlist has a pattern that matches the record's name."""
    return all(any(fnmatchcase(record.name, p) for p in patterns) for patterns in allowlists)


async def usable_models(
    claims: Claims, catalog: ModelCatalog, contracts: ContractClient | None
) -> list[ModelRecord]:
    """The records `claims` may serve: all of them for admins or without a contract service."""
    records = await catalog.records()
    if contracts is None or claims.is_admin:
        return records
    allowlists = await contracts.model_allowlists(claims)
    return [record for record in records if allowed(record, allowlists)]


async def find_model(
    claims: Claims,
    catalog: ModelCatalog,
    contracts: ContractClient | None,
    *,
    model_uuid: str | None,
    model_name: str | None,
) -> ModelRecord:
    """The record a `POST /serve` names: by id (model_uuid), else by name. 404 when there
    is none; 403 when the caller's contract does not allow it."""
    record: ModelRecord | None = None
    if model_uuid is not None:
        record = await catalog.record(model_uuid)
    elif model_name is not None:
        record = next((r for r in await catalog.records() if r.name == model_name), None)
    if record is None:
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
