"""The operator's rollout metrics, on the registry of its other metrics (one port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class RolloutMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rollouts = Counter(
            "modelserve_operator_rollouts",
            "Changes of a server's model that ended: outcome complete, rolled_back or superseded.",
            ["outcome"],
            registry=registry,
        )
        self.rollbacks = Counter(
            "modelserve_operator_rollbacks",
            "Rollouts the operator undid by itself, by reason: FetchFailed, ServerFailed, "
            "DeadlineExceeded.",
            ["namespace", "name", "reason"],
            registry=registry,
        )
