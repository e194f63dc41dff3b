"""Who is loaded: each model's state and last use, as /v1/models and /health show them.

A served name may have several servers (in the caller's tier): the model is as well off
as the best of them, and was last used when any of them was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.loading.states import ModelState, best_state, last_used, model_state
from modelserve.gateway.routing import RouteTable, Target


@dataclasses.dataclass(frozen=True)
class ModelStatus:
    state: ModelState
    last_used: float | None  # seconds since the epoch; None: never used

    def fields(self) -> dict[str, Any]:
        """The extra fields of OpenAI's model object."""
        used = None if self.last_used is None else round(self.last_used, 3)
        return {"state": self.state.value, "last_used": used}


def status_of(servers: Sequence[Target], table: RouteTable, book: LoadBook) -> ModelStatus:
    states = [
        model_state(target, table.serving(target), book.holding(target.server_id))
        for target in servers
    ]
    used = [last_used(target, book.load(target.server_id).last_used) for target in servers]
    known = [moment for moment in used if moment is not None]
    return ModelStatus(best_state(states), max(known) if known else None)


def health_lists(statuses: dict[str, ModelStatus]) -> dict[str, Any]:
    """The seeds' /health lists: the models loaded, every model, and each one's state."""
    names = sorted(statuses)
    return {
        "loaded_models": [name for name in names if statuses[name].state is ModelState.LOADED],
        "available_models": names,
        "models": [{"id": name, **statuses[name].fields()} for name in names],
    }
