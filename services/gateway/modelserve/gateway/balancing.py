"""Which endpoint of a server takes a request: a pure policy over endpoints and counts.

Discovery keeps the endpoints (a Service's pods, from its EndpointSlices; an external
server's one URL), the dispatcher counts the requests each has in flight, and this
module only chooses. Nothing here does I/O or keeps state, so a policy that also looks at
the request (a prompt's prefix, to reuse a server's cache) can replace `choose_endpoint`
without touching discovery or forwarding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One place a server answers, as the proxy reaches it."""

    url: str  # the OpenAI base URL (…/v1); it names the endpoint, in counts and exclusions
    ready: bool = True  # takes new requests (EndpointSlice `conditions.ready`)
    pod: str = ""  # the pod behind it, for logs ("" for an external server)


def choose_endpoint(
    endpoints: Sequence[Endpoint],
    in_flight: Mapping[str, int],
    turn: int,
    exclude: Collection[str] = (),
) -> Endpoint | None:
    """The ready endpoint with the fewest requests in flight (`in_flight` by URL), leaving
    out the URLs in `exclude` (those a request already failed on); ties go round-robin
    by `turn`. None when no endpoint is left."""
    eligible = [e for e in endpoints if e.ready and e.url not in exclude]
    if not eligible:
        return None
    fewest = min(in_flight.get(e.url, 0) for e in eligible)
    tied = [e for e in eligible if in_flight.get(e.url, 0) == fewest]
    return tied[turn % len(tied)]
