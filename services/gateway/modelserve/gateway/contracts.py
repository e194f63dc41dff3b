"""The gateway's questions to the contract service: may this user do this, and which models
may they use. Both fail closed: a contract service that does not answer refuses (503).

Decisions are asked as the platform service the gateway is (a service token) for the user
named in `principal`, with the roles and teams of the token the gateway verified. For a
user's model allowlists (from `GET /contracts/me`, only told to that user) the gateway
signs a short-lived token of the caller's own claims: it is the issuer of user tokens
anyway, and this works whatever the caller came with. The usage and limits pages
(`read_as_caller`) forward the caller's own Authorization header instead, so that the
contract service judges who reads what; an API key there is checked by the contract
service with the gateway (`JWT_GATEWAY_URL`), as on every service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims, TokenSigner
from modelserve.gateway.peer_errors import peer_refusal

# The name in the gateway's service token, for the contract and download services.
SERVICE_NAME = "gateway"
USER_TOKEN_SECONDS = 60


def principal_of(claims: Claims) -> dict[str, Any]:
    """The user the gateway acts for, as the contract service reads `principal`."""
    return {"subject": claims.sub, "teams": claims.teams, "roles": claims.roles}


class Decision(BaseModel):
    """The contract service's answer to POST /decide (the fields the gateway reads)."""

    allowed: bool
    reason: str
    message: str
    team: str | None = None


class _Limits(BaseModel):
    models: list[str] | None = None


class _MyContract(BaseModel):
    limits: _Limits
    team_limits: _Limits | None = None


def _unavailable(detail: str) -> ApiError:
    return ApiError(503, "contract_unavailable", f"the contract service {detail}")


class ContractClient:
    def __init__(self, url: str, http: httpx.AsyncClient, signer: TokenSigner) -> None:
        self._url = url.rstrip("/")
        self._http = http
        self._signer = signer

    async def _call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        try:
            response = await self._http.request(
                method,
                f"{self._url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as error:
            raise _unavailable(f"cannot be reached: {error}") from error
        if response.status_code != 200:
            raise _unavailable(f"answered {response.status_code}: {response.text[:200]}")
        return response.json()

    async def decide(
        self, claims: Claims, action: str, resource: dict[str, Any], *, dry_run: bool = False
    ) -> Decision:
        """The decision on `action` by the user of `claims` (a denial is an answer)."""
        body = {
            "principal": principal_of(claims),
            "action": action,
            "resource": resource,
            "dry_run": dry_run,
        }
        answer = await self._call("POST", "/decide", self._signer.service_token(SERVICE_NAME), body)
        try:
            return Decision.model_validate(answer)
        except ValidationError as error:
            raise _unavailable(f"sent a decision the gateway cannot read: {error}") from error

    async def model_allowlists(self, claims: Claims) -> list[list[str]]:
        """The `models` patterns that hold for the user: their own (or the defaults'), and
        their first team's; none where a contract leaves models open."""
        token = self._signer.sign(
            claims.sub, roles=claims.roles, teams=claims.teams, expires_in=USER_TOKEN_SECONDS
        )
        answer = await self._call("GET", "/contracts/me", token)
        try:
            mine = _MyContract.model_validate(answer)
        except ValidationError as error:
            raise _unavailable(f"sent limits the gateway cannot read: {error}") from error
        scopes = [mine.limits, mine.team_limits]
        return [scope.models for scope in scopes if scope is not None and scope.models is not None]

    async def read_as_caller(
        self, path: str, authorization: str, params: Mapping[str, Any] | None = None
    ) -> Any:
        """GET `path` with the caller's own Authorization header (a JWT or an API key):
        the contract service judges whose figures they may read. Its refusals are the
        gateway's (status, code and message kept); no answer is 503."""
        try:
            response = await self._http.get(
                f"{self._url}{path}",
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers={"Authorization": authorization},
            )
        except httpx.HTTPError as error:
            raise _unavailable(f"cannot be reached: {error}") from error
        if response.status_code >= 400:
            raise peer_refusal(response, _unavailable)
        try:
            return response.json()
        except ValueError as error:
            raise _unavailable(f"sent an answer that is not JSON: {error}") from error
