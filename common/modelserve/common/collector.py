"""Python's cyclic garbage collector in a service that has started.

CPython collects its youngest generation whenever 700 more container objects were made
than freed, and now and then the whole heap. A service's heap after startup is large
and lives as long as the process (FastAPI, pydantic, the routes, the clients: about
300,000 objects in the gateway), so each whole-heap pass walked all of it: 100 to 150 ms
with the event loop stopped, every few seconds under load, and about a fifth of the
gateway's CPU. A request's own objects are freed by their reference counts as it ends,
so the 700 are reached by passing peaks rather than by garbage.

Once the service has started, `settle` collects what startup left, freezes the rest
(`gc.freeze`: still freed when its last reference goes, never walked by a collection
again) and lets the youngest generation grow to `young_threshold` objects before it is
collected. Cycles made later are still collected, after more objects.
"""

from __future__ import annotations

import gc


def settle(young_threshold: int) -> None:
    """The started process's heap frozen; its youngest generation collected after
    `young_threshold` new objects (the older generations' thresholds kept)."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, oldest)
