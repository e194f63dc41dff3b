"""The gateway's client of the contract's POST /leases, and the service token it (and
the usage outbox) sends.

One call does, in the contract's order: give leases back, renew leases, read a
principal's scopes and limits (from PostgreSQL, never a replica's memory), and grant new
leases. The answer is parsed into typed values here; a call that has no answer (the
service unreachable, an error status, a body the gateway cannot read) raises
`ContractUnavailable`, which fails the request that needed it closed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from modelserve.common.request_ids import with_request_id
from modelserve.common.tokens import TokenSigner
from modelserve.contract.policy import Scope
from modelserve.contract.tables import Limits
from modelserve.gateway.contracts import SERVICE_NAME
from modelserve.gateway.upstream import UpstreamClient, UpstreamError


class ContractUnavailable(Exception):
    """No answer could be had (the service is down or answered an error)."""


class ServiceToken:
    """The gateway's own token, signed again when half of its life has passed."""

    def __init__(self, signer: TokenSigner, lifetime: float) -> None:
        self._signer = signer
        self._lifetime = lifetime
        self._token = ""
        self._renew_at = 0.0

    def header(self) -> str:
        now = time.monotonic()
        if now >= self._renew_at:
            self._token = self._signer.service_token(SERVICE_NAME)
            self._renew_at = now + self._lifetime / 2
        return f"Bearer {self._token}"

    def headers(self) -> dict[str, str]:
        """A JSON request's headers, with this token."""
        return {"Authorization": self.header(), "Content-Type": "application/json"}


@dataclasses.dataclass(frozen=True)
class PrincipalView:
    """What the contract says of a principal: admin or not, the acting team, and the
    scopes (user, then team) with their effective limits."""

    admin: bool
    team: str | None
    scopes: tuple[Scope, ...]


@dataclasses.dataclass(frozen=True)
class Grant:
    scope: str
    metric: str
    lease: str | None  # None: nothing granted
    granted: int
    limit: int | None
    window_ends_in: float  # seconds from the contract's now to the end of the window


@dataclasses.dataclass(frozen=True)
class LeaseAnswer:
    ttl: float
    principal: PrincipalView | None
    leases: tuple[Grant, ...]
    renewed: frozenset[str]


@dataclasses.dataclass(frozen=True)
class Want:
    scope: str
    metric: str
    amount: int


@dataclasses.dataclass(frozen=True)
class GiveBack:
    lease: str
    taken: int


def _view(found: dict[str, Any]) -> PrincipalView:
    scopes = tuple(
        Scope(str(scope["key"]), str(scope["label"]), Limits.model_validate(scope["limits"]))
        for scope in found["scopes"]
    )
    team = found.get("team")
    return PrincipalView(
        admin=bool(found["admin"]), team=None if team is None else str(team), scopes=scopes
    )


def parse_answer(body: bytes) -> LeaseAnswer:
    """POST /leases' answer; ValueError (or KeyError, TypeError) when it is not one."""
    found: dict[str, Any] = json.loads(body)
    principal = found.get("principal")
    leases = tuple(
        Grant(
            scope=str(grant["scope"]),
            metric=str(grant["metric"]),
            lease=None if grant.get("lease") is None else str(grant["lease"]),
            granted=int(grant["granted"]),
            limit=None if grant.get("limit") is None else int(grant["limit"]),
            window_ends_in=float(grant["window_ends_in"]),
        )
        for grant in found.get("leases") or []
    )
    return LeaseAnswer(
        ttl=float(found["ttl"]),
        principal=None if principal is None else _view(principal),
        leases=leases,
        renewed=frozenset(str(lease) for lease in found.get("renewed") or []),
    )


class LeaseClient:
    """POST /leases as `holder` (this process), with the gateway's service token."""

    def __init__(self, url: str, http: UpstreamClient, token: ServiceToken, holder: str) -> None:
        self._url = f"{url.rstrip('/')}/leases"
        self._http = http
        self._token = token
        self.holder = holder

    async def call(
        self,
        *,
        principal: dict[str, Any] | None = None,
        want: Sequence[Want] = (),
        renew: Sequence[str] = (),
        give_back: Sequence[GiveBack] = (),
    ) -> LeaseAnswer:
        body: dict[str, Any] = {"holder": self.holder}
        if principal is not None:
            body["principal"] = principal
        if want:
            body["want"] = [dataclasses.asdict(item) for item in want]
        if renew:
            body["renew"] = list(renew)
        if give_back:
            body["give_back"] = [dataclasses.asdict(item) for item in give_back]
        try:
            status, answer = await self._http.post(
                self._url, json.dumps(body).encode(), with_request_id(self._token.headers())
            )
        except UpstreamError as error:
            raise ContractUnavailable(f"the contract service is unreachable: {error}") from error
        if status != 200:
            raise ContractUnavailable(f"the contract service answered {status}: {answer[:200]!r}")
        try:
            return parse_answer(answer)
        except (ValueError, KeyError, TypeError, ValidationError) as error:
            raise ContractUnavailable("the contract service answered no lease") from error
