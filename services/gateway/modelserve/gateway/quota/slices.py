"""A replica's slices of the limited counters, as pure bookkeeping: the leases it holds of
each (scope, metric), what its requests took from them, how fast they take, and which
leases are due for renewal or for giving back. The ledger (`ledger`) passes the time in
(seconds of `time.monotonic()`) and does the talking to the contract service.

Times are measured from when the gateway *sent* the call that granted or renewed a lease:
the contract's clock started the lease later than that, so a deadline computed from the
send time never outlives the contract's own expiry or the lease's window.
"""

from __future__ import annotations

import dataclasses
import math

# A lease stops being used this long before the contract's lease time runs out: room for
# the monotonic clocks of two machines drifting apart, and for the last request's
# decision. None before its window's end: that end, counted from the send time, is never
# later than the contract's, and a hold is settled in its lease's window whenever its
# usage record comes (a margin there stalled every request for its length at the turn of
# each window).
MARGIN_SECONDS = 0.25
# A slice nobody took from for this long gives its leases back.
IDLE_SECONDS = 5.0
# After a grant short of what waiting requests needed, the slice denies what does not fit
# without asking again for this long (or until its window ends, if sooner).
EXHAUSTED_SECONDS = 1.0
# Refill ahead when the remainder would last less than this at the take rate ...
REFILL_BELOW_SECONDS = 1.0
# ... asking for this much of the take rate, but never more than this share of the limit
# in one ask (beyond what waiting requests need), nor while that much is left: a burst's
# estimate of the rate would otherwise take a whole small limit into one replica, where
# it is stranded until given back, or lost if the replica dies.
REFILL_SECONDS = 2.0
REFILL_SHARE = 0.25
# The take rate of a tick under way is measured over this much time at least.
MIN_RATE_SECONDS = 0.1


def hold_of(metric: str, tokens: int) -> int:
    """What one request takes from a slice of `metric`: one request, or its tokens."""
    return 1 if metric.startswith("requests/") else tokens


@dataclasses.dataclass(eq=False)
class Lease:
    """One grant of the contract service: `granted` units of one counter in one window."""

    id: str
    granted: int
    window_end: float  # the end of the lease's window (from the send time: never later)
    renewed: float  # when the call that granted or last renewed it was sent
    ttl: float  # the contract's lease time at that call
    taken: int = 0

    @property
    def left(self) -> int:
        return self.granted - self.taken

    @property
    def deadline(self) -> float:
        """Until when requests may take from it."""
        return min(self.renewed + self.ttl - MARGIN_SECONDS, self.window_end)

    def usable(self, now: float) -> bool:
        return now < self.deadline

    def renew(self, sent: float, ttl: float) -> None:
        self.renewed, self.ttl = sent, ttl


@dataclasses.dataclass(eq=False)
class Slice:
    """What this replica holds of one limited counter (scope, metric)."""

    scope: str
    metric: str
    limit: int  # the limit its leases were granted under
    leases: list[Lease] = dataclasses.field(default_factory=list)
    # Denials without a round trip until then (a grant fell short of what was waiting).
    exhausted_until: float = 0.0
    # No refill ahead until then (the last one got less than it asked for).
    refill_after: float = 0.0
    last_take: float = 0.0
    # Units taken per second: smoothed over housekeeping ticks, plus the tick under way
    # (`bucket` taken since `tick_started`).
    rate: float = 0.0
    bucket: int = 0
    tick_started: float = 0.0
    # Holds of requests waiting for a grant to this slice right now.
    waiting: int = 0
    # The last grant came too late in its window: ask again once the next has begun.
    next_window: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return self.scope, self.metric

    def lease_for(self, hold: int, now: float) -> Lease | None:
        """The oldest usable lease with room for `hold` (the older drains first)."""
        for lease in self.leases:
            if lease.left >= hold and lease.usable(now):
                return lease
        return None

    def take(self, lease: Lease, hold: int, now: float) -> None:
        lease.taken += hold
        self.bucket += hold
        self.last_take = now

    def remaining(self, now: float) -> int:
        return sum(lease.left for lease in self.leases if lease.usable(now))

    def exhausted(self, now: float) -> bool:
        return now < self.exhausted_until

    def idle(self, now: float) -> bool:
        return now - self.last_take >= IDLE_SECONDS

    def take_rate(self, now: float) -> float:
        """Units per second: the smoothed rate, or the tick under way's if higher (so
        that a slice just begun, or taken from faster, is not refilled in small steps)."""
        elapsed = max(now - self.tick_started, MIN_RATE_SECONDS)
        return max(self.rate, self.bucket / elapsed)

    def tick(self, now: float) -> None:
        """A housekeeping tick: the bucket into the smoothed rate."""
        elapsed = now - self.tick_started
        if elapsed > 0:
            self.rate = 0.5 * self.rate + 0.5 * self.bucket / elapsed
        self.bucket, self.tick_started = 0, now

    def refill_wanted(self, hold: int, now: float) -> int:
        """How much to ask for ahead of need (0: none): when what is left would last
        less than REFILL_BELOW_SECONDS at the take rate, REFILL_SECONDS of it (at most
        REFILL_SHARE of the limit, at least a hold). Not while a share of the limit is
        left: so a slice holds less than two shares beyond its requests' needs."""
        rate = self.take_rate(now)
        if rate <= 0 or now < self.refill_after or self.exhausted(now):
            return 0
        enough = min(rate * REFILL_BELOW_SECONDS, self._share())
        # The first lease alone usually answers, without a sum over them all.
        if self.leases and self.leases[0].left >= enough and self.leases[0].usable(now):
            return 0
        if self.remaining(now) >= enough:
            return 0
        return max(hold, 1, self._refill(rate))

    def _share(self) -> int:
        return max(1, math.ceil(self.limit * REFILL_SHARE))

    def _refill(self, rate: float) -> int:
        return min(math.ceil(rate * REFILL_SECONDS), self._share())

    def short_ask(self, hold: int, now: float) -> tuple[int, int]:
        """(amount, demand) of an ask for requests that do not fit: `demand` is what the
        waiting requests need (this one and the others waiting), `amount` that plus a
        refill ahead (at least one more hold); neither over the limit, never below 1 (a
        grant of nothing is no lease)."""
        demand = max(1, min(hold + self.waiting, self.limit))
        refill = max(hold, self._refill(self.take_rate(now)))
        return min(demand + refill, max(1, self.limit)), demand

    def retire(self, hold: int, now: float) -> list[Lease]:
        """The leases that cannot hold `hold`, out of the slice (to be given back with the
        next ask, so that their leftovers count towards its grant)."""
        kept = [lease for lease in self.leases if lease.left >= hold and lease.usable(now)]
        retired = [lease for lease in self.leases if lease not in kept]
        self.leases = kept
        return retired

    def due(self, now: float) -> tuple[list[Lease], list[Lease]]:
        """For a housekeeping pass: (to renew, to give back). Given back (and taken out of
        the slice): every lease of an idle slice, and leases used up, past their deadline
        or their window. Renewed: the others, once a third of their time has passed."""
        renew: list[Lease] = []
        give_back: list[Lease] = []
        idle = self.idle(now)
        for lease in self.leases:
            if idle or lease.left <= 0 or not lease.usable(now):
                give_back.append(lease)
            elif now - lease.renewed >= lease.ttl / 3:
                renew.append(lease)
        self.leases = [lease for lease in self.leases if lease not in give_back]
        return renew, give_back

    def drop(self, lease: Lease) -> None:
        """A lease the contract no longer has (charged at its expiry): not used again."""
        if lease in self.leases:
            self.leases.remove(lease)
