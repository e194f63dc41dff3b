"""The operator's Prometheus metrics (dynamic loading), on their own registry and port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Activation takes from a second (a cached small model) to many minutes (a large one
# fetched first).
ACTIVATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800)


class AutoscalerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.activations = Counter(
            "modelserve_operator_activations",
            "Models woken from 0 replicas because a gateway held a request for them.",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.activation_seconds = Histogram(
            "modelserve_operator_activation_seconds",
            "From the decision to wake a model to its first Ready replica.",
            buckets=ACTIVATION_BUCKETS,
            registry=self.registry,
        )
        self.evictions = Counter(
            "modelserve_operator_evictions",
            "Models put to sleep to free GPUs for another; reason lru: the least recently "
            "used of those that may be evicted.",
            ["reason"],
            registry=self.registry,
        )
        self.sleeps = Counter(
            "modelserve_operator_sleeps",
            "Models scaled to 0 replicas after a drain; reason idle or evicted.",
            ["reason"],
            registry=self.registry,
        )
        self.loaded_seconds = Counter(
            "modelserve_operator_loaded_seconds",
            "Seconds a model (with spec.autoscaling) had at least one Ready replica.",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.drains_cancelled = Counter(
            "modelserve_operator_drains_cancelled",
            "Drains given up: a request came, or not every gateway replica acknowledged.",
            registry=self.registry,
        )
