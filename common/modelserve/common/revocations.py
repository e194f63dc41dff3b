"""Revocation of tokens before they expire: what the gateway publishes, and how a verifier
keeps a current copy.

The gateway keeps, per user, a "not before" time (moved on when the user is disabled,
changes role, loses a team or changes password) and the ids of revoked API keys. A token
of a user issued before that user's not-before is void; so are the claims of a revoked
key. `GET /auth/revocations` on the gateway answers the users whose not-before is recent
enough to matter (tokens issued before it may still be unexpired) and the recently
revoked keys; users appear only as the SHA-256 of their name.

`RevocationList` keeps the last list a source gave, asks again at most every
`refresh_seconds` on the verification path (one request at a time; the others meanwhile
use the list they have), and fails closed: once its list is older than
`max_stale_seconds` and no new one comes, `current()` raises `RevocationsUnavailable`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable

import httpx
from pydantic import BaseModel, ValidationError

logger = logging.getLogger(__name__)


def subject_digest(subject: str) -> str:
    """How a user is named in the published list."""
    return hashlib.sha256(subject.encode()).hexdigest()


class Revocations(BaseModel):
    """What `GET /auth/revocations` answers."""

    version: str
    """Changes whenever the rest changes (also the answer's ETag)."""
    users: dict[str, int] = {}
    """SHA-256 of a user's name -> not-before (seconds since the epoch): tokens and key
    claims of that user issued (`iat`) before it are void."""
    keys: frozenset[str] = frozenset()
    """Ids of revoked API keys (a set: looked up at every token check)."""

    def reason(self, subject: str, issued_at: int, key_id: str | None) -> str | None:
        """Why a token of `subject` issued at `issued_at` (through API key `key_id`, if
        it came from one) is void, or None."""
        if key_id is not None and key_id in self.keys:
            return "the API key was revoked"
        not_before = self.users.get(subject_digest(subject))
        if not_before is not None and issued_at < not_before:
            return "the account changed after this token was issued; sign in again"
        return None


class RevocationsUnavailable(Exception):
    """No revocation list recent enough to trust: tokens are refused until one comes."""


RevocationSource = Callable[[], Awaitable[Revocations]]


def http_source(http: httpx.AsyncClient, url: str) -> RevocationSource:
    """Fetches the list from the gateway's `url` (…/auth/revocations), sending the last
    version as If-None-Match so that an unchanged list costs an empty answer."""
    last: list[Revocations] = []

    async def fetch() -> Revocations:
        headers = {"If-None-Match": f'"{last[0].version}"'} if last else {}
        try:
            response = await http.get(url, headers=headers)
            if response.status_code == 304 and last:
                return last[0]
            response.raise_for_status()
            revocations = Revocations.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError) as error:
            raise RevocationsUnavailable(f"{url}: {error}") from None
        last[:] = [revocations]
        return revocations

    return fetch


class RevocationList:
    def __init__(
        self,
        source: RevocationSource,
        *,
        refresh_seconds: float,
        max_stale_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_stale_seconds < refresh_seconds:
            raise ValueError("the list may not go stale before it is refreshed")
        self._source = source
        self._refresh = refresh_seconds
        self._max_stale = max_stale_seconds
        self._clock = clock
        self._list: Revocations | None = None
        self._fetched_at = -float("inf")  # of the list held
        self._tried_at = -float("inf")  # of the last request, answered or not
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Ask again on the next use (the caller has just revoked something)."""
        self._fetched_at = self._tried_at = -float("inf")

    async def current(self) -> Revocations:
        now = self._clock()
        if self._list is not None and now - self._fetched_at < self._refresh:
            return self._list
        usable = self._list is not None and now - self._fetched_at < self._max_stale
        if usable and (self._lock.locked() or now - self._tried_at < self._refresh):
            # Another request is asking, or the last try failed a moment ago.
            assert self._list is not None
            return self._list
        async with self._lock:
            now = self._clock()
            if now - self._tried_at >= self._refresh:
                self._tried_at = now
                try:
                    self._list = await self._source()
                    self._fetched_at = now
                except RevocationsUnavailable as error:
                    logger.warning("revocation list not refreshed: %s", error)
            if self._list is None or self._clock() - self._fetched_at >= self._max_stale:
                raise RevocationsUnavailable(
                    "no current revocation list: tokens cannot be checked right now"
                )
            return self._list
