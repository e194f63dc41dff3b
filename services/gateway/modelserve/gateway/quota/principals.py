"""What the contract says of each principal, as last read, and when to read it again.

Views are read with POST /leases (the principal's scopes and limits, from PostgreSQL) and
kept per (subject, teams, roles). A view older than the refresh interval is read again
before it decides a request, so that a contract change reaches decisions within that
interval; the ledger's housekeeping reads the views of active principals again ahead of
that, so that their requests do not wait. While the contract service cannot be reached,
a view is used until its deadline (its read plus the contract's lease time), as the
leases of its slices are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from modelserve.contract import policy
from modelserve.contract.policy import Principal
from modelserve.gateway.quota.client import PrincipalView
from modelserve.gateway.quota.slices import MARGIN_SECONDS

Key = tuple[str, tuple[str, ...], tuple[str, ...]]
# Views not used for this long (and at least twice the refresh interval) are forgotten.
FORGET_SECONDS = 60.0
# Active views are read again in the background once this share of the interval passed.
AHEAD = 0.8


def key_of(principal: Principal) -> Key:
    return principal.subject, tuple(principal.teams), tuple(principal.roles)


def principal_body(principal: Principal) -> dict[str, Any]:
    return {"subject": principal.subject, "teams": principal.teams, "roles": principal.roles}


@dataclasses.dataclass(eq=False)
class Entry:
    principal: Principal
    view: PrincipalView
    read: float  # when the call that read it was sent
    ttl: float
    used: float

    @property
    def deadline(self) -> float:
        return self.read + self.ttl - MARGIN_SECONDS


class Views:
    def __init__(self, refresh_seconds: float) -> None:
        self.refresh = refresh_seconds
        self._entries: dict[Key, Entry] = {}

    def fresh(self, key: Key, now: float) -> Entry | None:
        """The entry, if it may decide now without being read again."""
        entry = self._entries.get(key)
        if entry is None or self.refresh <= 0 or now - entry.read >= self.refresh:
            return None
        entry.used = now
        return entry

    def fallback(self, key: Key, now: float) -> Entry | None:
        """The entry, if it may still decide while the contract cannot be read."""
        entry = self._entries.get(key)
        if entry is None or self.refresh <= 0 or now >= entry.deadline:
            return None
        entry.used = now
        return entry

    def put(self, principal: Principal, view: PrincipalView, read: float, ttl: float) -> Entry:
        """Store a view just read, unless a later read is stored already; the entry
        stored now."""
        key = key_of(principal)
        old = self._entries.get(key)
        if old is not None and old.read > read:
            return old
        entry = Entry(principal, view, read, ttl, old.used if old else read)
        self._entries[key] = entry
        return entry

    def get(self, key: Key) -> Entry | None:
        return self._entries.get(key)

    def due(self, now: float) -> Iterator[Entry]:
        """Entries to read again in the background: used since they were read, and
        past AHEAD of the refresh interval."""
        if self.refresh <= 0:
            return
        for entry in list(self._entries.values()):
            if entry.used > entry.read and now - entry.read >= AHEAD * self.refresh:
                yield entry

    def forget_unused(self, now: float) -> None:
        keep = max(FORGET_SECONDS, 2 * self.refresh)
        for key, entry in list(self._entries.items()):
            if now - entry.used >= keep:
                del self._entries[key]


def limited(view: PrincipalView) -> dict[tuple[str, str], int]:
    """The limited counters of a view's scopes, (scope, metric) -> limit, as the rules
    charge them."""
    return {
        key: charge.limit
        for key, charge in policy.limited_counters(view.scopes).items()
        if charge.limit is not None
    }


def changed(old: PrincipalView, new: PrincipalView) -> set[tuple[str, str]]:
    """The counters of `old`'s scopes whose limit is different (or gone) in `new`."""
    before, after = limited(old), limited(new)
    return {key for key, limit in before.items() if after.get(key) != limit}
