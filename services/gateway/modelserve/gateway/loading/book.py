"""This replica's requests per server (by ModelServe UID): in flight, held, last used.

The dispatcher counts every upstream call in flight (a scaled request makes several:
each loads the server); the holder counts held requests. A scaled request is also
counted running on each server it uses for its whole run (`running`), so that between
its calls (while a reward model scores, say) the server is not idle and no drain can
complete under it. The report's `in_flight` is the larger of the two counts, not their
sum: a run adds nothing to the load its calls already show (the autoscaler's load is
not inflated), and keeps it at least 1 while it waits between them.

`last_used` is the time of the latest request routed to the server, held or forwarded.
Listeners (the reporter) hear of every change, with whether it is a first held request
(the operator wakes a model on it, so the report goes out at once).

Plain data on one event loop; nothing here does I/O.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Collection, Iterator

from modelserve.common.load_reports import ServerLoad

# Called with the server's UID and whether the change made its first held request.
Listener = Callable[[str, bool], None]


@dataclasses.dataclass
class _Counts:
    calls: int = 0  # upstream calls in flight
    runs: int = 0  # scaled requests running
    held: int = 0
    last_used: float = 0.0

    @property
    def in_flight(self) -> int:
        return max(self.calls, self.runs)


class LoadBook:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._servers: dict[str, _Counts] = {}
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _changed(self, server_id: str, first_held: bool = False) -> None:
        for listener in self._listeners:
            listener(server_id, first_held)

    def _counts(self, server_id: str) -> _Counts:
        return self._servers.setdefault(server_id, _Counts())

    # --- Counted by the dispatcher and the holder --------------------------------------

    def started(self, server_id: str) -> None:
        """A call to the server is in flight."""
        counts = self._counts(server_id)
        counts.calls += 1
        counts.last_used = self._clock()
        self._changed(server_id)

    def finished(self, server_id: str) -> None:
        counts = self._counts(server_id)
        counts.calls = max(0, counts.calls - 1)
        self._changed(server_id)

    @contextlib.contextmanager
    def running(self, server_ids: Collection[str]) -> Iterator[None]:
        """A scaled request uses these servers until the block ends (its calls are
        counted apart, by the dispatcher)."""
        for server_id in server_ids:
            counts = self._counts(server_id)
            counts.runs += 1
            counts.last_used = self._clock()
            self._changed(server_id)
        try:
            yield
        finally:
            for server_id in server_ids:
                counts = self._counts(server_id)
                counts.runs = max(0, counts.runs - 1)
                self._changed(server_id)

    def held(self, server_id: str) -> None:
        """A request waits for the server to wake."""
        counts = self._counts(server_id)
        counts.held += 1
        counts.last_used = self._clock()
        self._changed(server_id, first_held=counts.held == 1)

    def released(self, server_id: str) -> None:
        counts = self._counts(server_id)
        counts.held = max(0, counts.held - 1)
        self._changed(server_id)

    # --- Read by the holder, the reporter and the routes -------------------------------

    def load(self, server_id: str) -> ServerLoad:
        counts = self._servers.get(server_id) or _Counts()
        return ServerLoad(counts.in_flight, counts.held, counts.last_used)

    def holding(self, server_id: str) -> int:
        counts = self._servers.get(server_id)
        return counts.held if counts is not None else 0

    def report(self, known: Collection[str]) -> dict[str, ServerLoad]:
        """Each server's load, for the servers still in `known` that were ever used (the
        others are forgotten: a deleted server's counts end with it)."""
        for server_id in [s for s in self._servers if s not in known]:
            if not self._servers[server_id].in_flight and not self._servers[server_id].held:
                del self._servers[server_id]
        return {
            server_id: self.load(server_id)
            for server_id, counts in sorted(self._servers.items())
            if counts.last_used or counts.in_flight or counts.held
        }
