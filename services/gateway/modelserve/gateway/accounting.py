"""Inference accounting with the contract service: may this request run, and what it used.

Before forwarding, `decide` asks POST /decide (action `infer`, holding `max_tokens`).
After the answer, `settle` hands the tokens really used to the usage outbox
(`usage_outbox`), which keeps them in PostgreSQL until the contract's POST /usage has
them, settling the decision's reservation: a request never waits for its usage to be
delivered, and an outage of the contract service or a crash of the gateway loses none.

The gateway acts as a service here: a service token of its own, naming the user it acts
for in `principal`. It fails closed: a decision that cannot be had refuses the request.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any

from modelserve.common.request_ids import with_request_id
from modelserve.common.tokens import Claims, TokenSigner
from modelserve.gateway.contracts import SERVICE_NAME, principal_of
from modelserve.gateway.upstream import UpstreamClient, UpstreamError
from modelserve.gateway.usage_outbox import Send, UsageOutbox


class ContractUnavailable(Exception):
    """No decision could be had (the service is down or answered an error)."""


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    message: str
    team: str | None = None
    reservation: str | None = None


def usage_record(
    claims: Claims,
    model: str,
    decision: Decision | None,
    prompt_tokens: int,
    completion_tokens: int,
    usage_id: uuid.UUID,
) -> dict[str, Any]:
    """The body of POST /usage for one request; `id` lets the contract count it once."""
    return {
        "id": str(usage_id),
        "principal": principal_of(claims),
        "team": decision.team if decision else None,
        "model": model,
        "reservation": decision.reservation if decision else None,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
    }


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


class Accounting:
    """The proxy's side of the contract service (`contracts` is the management routes')."""

    def __init__(
        self, url: str, http: UpstreamClient, token: ServiceToken, outbox: UsageOutbox
    ) -> None:
        self._url = url.rstrip("/")
        self._http = http
        self._token = token
        self._outbox = outbox

    async def decide(
        self,
        claims: Claims,
        model: str,
        max_tokens: int | None,
        budget: int | None = None,
        *,
        prompts: int = 1,
        server_owner: str | None = None,
        server_team: str | None = None,
    ) -> Decision:
        """`prompts`: tokens are held for each prompt of a list; `server_owner` and
        `server_team` (the server's labels) let a contract exempt the caller's own
        servers from its rate limits."""
        resource: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "budget": budget}
        if prompts != 1:
            resource["prompts"] = prompts
        if server_owner is not None:
            resource["server_owner"] = server_owner
        if server_team is not None:
            resource["server_team"] = server_team
        body = {"principal": principal_of(claims), "action": "infer", "resource": resource}
        try:
            status, answer = await self._http.post(
                f"{self._url}/decide",
                json.dumps(body).encode(),
                with_request_id(self._token.headers()),
            )
        except UpstreamError as error:
            raise ContractUnavailable(f"the contract service is unreachable: {error}") from error
        if status != 200:
            raise ContractUnavailable(f"the contract service answered {status}: {answer[:200]!r}")
        try:
            found: dict[str, Any] = json.loads(answer)
            return Decision(
                allowed=bool(found["allowed"]),
                reason=str(found.get("reason", "")),
                message=str(found.get("message", "")),
                team=found.get("team"),
                reservation=found.get("reservation"),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ContractUnavailable("the contract service answered no decision") from error

    def settle(
        self,
        claims: Claims,
        model: str,
        decision: Decision | None,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """Put what a request used in the outbox. Always, even nothing, and even for a
        failed or abandoned request: its reserved tokens come back now, rather than being
        charged in full when the reservation expires. Never waits."""
        usage_id = uuid.uuid4()
        self._outbox.add(
            usage_id,
            usage_record(claims, model, decision, prompt_tokens, completion_tokens, usage_id),
        )


def usage_sender(url: str, http: UpstreamClient, token: ServiceToken) -> Send:
    """How the outbox delivers a record: POST it to the contract's /usage; (status,
    answer), status 0 when the service cannot be reached."""
    usage_url = f"{url.rstrip('/')}/usage"

    async def send(record: bytes) -> tuple[int, bytes]:
        try:
            return await http.post(usage_url, record, token.headers())
        except UpstreamError as error:
            return 0, f"the contract service is {error.kind}: {error.detail}".encode()

    return send
