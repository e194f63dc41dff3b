"""Where one server stands for dynamic loading (loaded, loading, sleeping, unavailable),
for `GET /status`: the state `/v1/models` gives its model, here of the server itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.loading.states import ModelState, model_state
from modelserve.gateway.routing import RouteTable, target_from_body


def server_state(body: Mapping[str, Any], table: RouteTable, book: LoadBook) -> ModelState | None:
    """The state of the ModelServe `body` (as just read from the cluster), with this
    replica's endpoints and held requests; None for a spec the gateway cannot read."""
    try:
        target = target_from_body(body)
    except ValueError:
        return None
    return model_state(target, table.serving(target), book.holding(target.server_id))
