"""The jobs service's one client of the gateway: it sends each item as a request of the
job's owner, so that the gateway authorises and counts it exactly like that user's
online request (their contract, limits, usage).

The owner's token comes from the gateway itself (`POST /auth/delegate`, asked with the
jobs service's own service token): the user as they are now, their role and teams, and
the API key the job was queued with. It is kept in memory until shortly before it
expires, never stored. A disabled owner or a revoked key stops the job's items
(`owner_not_allowed`)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from modelserve.common.online_pressure import BACKGROUND, PRIORITY_HEADER, OnlineSignal, read_signal
from modelserve.common.tokens import TokenSigner
from modelserve.jobs.executors import ItemBusy, ItemFailed, ItemRetry

SERVICE_NAME = "jobs"
# A delegated token is asked for again this long before it expires.
RENEW_BEFORE_SECONDS = 60.0
TOKENS_KEPT = 10_000


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: httpx.Headers


class GatewayClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        signer: TokenSigner,
        signals: Callable[[str, OnlineSignal], None] | None = None,
    ) -> None:
        self._http = http
        # Told the gateway's online signal on each item's answer, with the item's model
        # (the worker's pacing: docs/jobs.md, "Below online traffic").
        self._signals = signals
        self._base = base_url.rstrip("/")
        self._signer = signer
        # (owner, key id, queued at) -> (token, when to ask again, monotonic)
        self._tokens: dict[tuple[str, str | None, int | None], tuple[str, float]] = {}

    async def _delegated(self, owner: str, key_id: str | None, since: int | None) -> str:
        kept = self._tokens.get((owner, key_id, since))
        if kept is not None and kept[1] > time.monotonic():
            return kept[0]
        headers = {"Authorization": f"Bearer {self._signer.service_token(SERVICE_NAME)}"}
        try:
            answer = await self._http.post(
                f"{self._base}/auth/delegate",
                json={"sub": owner, "key_id": key_id, "queued_at": since},
                headers=headers,
            )
        except httpx.HTTPError as error:
            raise ItemRetry(
                "gateway_unreachable", f"the gateway is unreachable: {error}"
            ) from error
        if answer.status_code == 403:
            raise ItemFailed(
                "owner_not_allowed",
                f"the gateway runs no work for {owner!r} now: {_message(answer)}",
            )
        if answer.status_code != 200:
            raise ItemRetry(
                "delegation_unavailable",
                f"the gateway answered {answer.status_code} to a delegation: {_message(answer)}",
            )
        try:
            body = answer.json()
            token, lifetime = str(body["access_token"]), float(body["expires_in"])
        except (ValueError, KeyError, TypeError) as error:
            raise ItemRetry("bad_answer", "the gateway's delegation is not readable") from error
        if len(self._tokens) >= TOKENS_KEPT:
            self._tokens.pop(next(iter(self._tokens)))
        renew_at = time.monotonic() + max(lifetime - RENEW_BEFORE_SECONDS, lifetime / 2)
        self._tokens[(owner, key_id, since)] = (token, renew_at)
        return token

    async def send(
        self,
        path: str,
        body: Any,
        *,
        owner: str,
        key_id: str | None,
        since: dt.datetime | None = None,
    ) -> Answer:
        """POST `body` to the gateway's `path` as `owner` (for work they queued at `since`:
        refused once they have revoked their sessions after it): its answer, whatever its
        status, except those worth another attempt (unreachable, 5xx: ItemRetry; 429 and
        503, the gateway or the owner's limits busy: ItemBusy, with the wait the gateway
        asks for). A 401 (the token expired on its way) is asked again once with a fresh
        token."""
        queued_at = int(since.timestamp()) if since is not None else None
        for attempt in range(2):
            token = await self._delegated(owner, key_id, queued_at)
            # Marked as background work: the gateway keeps it out of online traffic's
            # figures and answers with them.
            headers = {"Authorization": f"Bearer {token}", PRIORITY_HEADER: BACKGROUND}
            try:
                answer = await self._http.post(self._base + path, json=body, headers=headers)
            except httpx.HTTPError as error:
                raise ItemRetry(
                    "gateway_unreachable", f"the gateway is unreachable: {error}"
                ) from error
            if answer.status_code == 401 and attempt == 0:
                self._tokens.pop((owner, key_id, queued_at), None)
                continue
            break
        signal = read_signal(answer.headers)
        if signal is not None and self._signals is not None and isinstance(body, dict):
            self._signals(str(body.get("model") or ""), signal)
        if answer.status_code in (429, 503):
            raise ItemBusy(
                "gateway_busy",
                f"the gateway answered {answer.status_code}: {answer.text[:500]}",
                retry_after=_retry_after(answer.headers.get("retry-after")),
            )
        if answer.status_code >= 500:
            raise ItemRetry(
                "gateway_error", f"the gateway answered {answer.status_code}: {answer.text[:500]}"
            )
        try:
            parsed = answer.json()
        except ValueError as error:
            raise ItemRetry("bad_answer", "the gateway's answer is not JSON") from error
        return Answer(answer.status_code, parsed, answer.headers)

    async def post(
        self,
        path: str,
        body: Any,
        *,
        owner: str,
        key_id: str | None,
        since: dt.datetime | None = None,
    ) -> Any:
        """The body of a 200 answer; any other status fails the item (`request_refused`)
        with the gateway's message."""
        answer = await self.send(path, body, owner=owner, key_id=key_id, since=since)
        if answer.status != 200:
            raise ItemFailed(
                "request_refused",
                f"the gateway answered {answer.status}: {_error_text(answer.body)}",
            )
        return answer.body


def _retry_after(value: str | None) -> float | None:
    """Seconds of a Retry-After header given in seconds (its date form is not used by the
    gateway), at most an hour."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return None if seconds is None or seconds < 0 else min(seconds, 3600.0)


def _error_text(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return f"{error.get('code') or error.get('type')}: {error.get('message')}"
    return str(body)[:500]


def _message(answer: httpx.Response) -> str:
    try:
        return _error_text(answer.json())
    except ValueError:
        return answer.text[:500]
