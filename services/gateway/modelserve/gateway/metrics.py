"""The gateway's Prometheus metrics, in a registry of the app's own (no module globals).

Label values stay bounded: `model` is a served name the route table knows ("" for a
request that named none or an unknown one, so that clients cannot mint series), `route`
is a route's path template, `status` an HTTP status. Per-user token counts carry the
platform user name: users are the platform's accounts, not arbitrary client input.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

PREFIX = "modelserve_gateway"
# Request latency: from a millisecond (errors, cached answers) to long generations.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Holding a request while its model loads: from a warm wake to a cold download.
# The gateway's own part of a hold: its route table saw the Ready endpoint -> the request
# went on to it (target: 50 ms at the median).
RELEASE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
HOLD_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
FIRST_TOKEN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


M = TypeVar("M", bound=MetricWrapperBase)


class Children(Generic[M]):
    """The labelled children of one metric, kept once made: the proxy counts every
    request in several of them, and `labels()` checks and converts each value and takes
    a lock (~2.5 µs), where this is a dict lookup. Label sets are never removed here, so
    a kept child is the one the registry exports."""

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_requests",
            "OpenAI-compatible requests answered, by served model, route and HTTP status.",
            ["model", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from a request's arrival to the last byte of its answer.",
            ["model", "route"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.first_token = Histogram(
            f"{PREFIX}_time_to_first_token_seconds",
            "Time from a streamed request's arrival to its first chunk from the model server.",
            ["model", "route"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            f"{PREFIX}_tokens",
            "Tokens by direction: in (prompt) and out (completion), as the model server "
            "reported them (or, for a stream that reported none, one per content chunk).",
            ["user", "model", "direction"],
            registry=self.registry,
        )
        self.scaling_requests = Counter(
            f"{PREFIX}_scaling_requests",
            "Chat completions answered by an inference-time scaling algorithm.",
            ["model", "algorithm", "status"],
            registry=self.registry,
        )
        self.scaling_budget = Histogram(
            f"{PREFIX}_scaling_budget",
            "The budget (candidates, particles, beams x expansions) of scaled requests.",
            ["algorithm"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
            registry=self.registry,
        )
        self.scaling_calls = Counter(
            f"{PREFIX}_scaling_upstream_calls",
            "Calls to model servers (generation and reward) made by scaled requests.",
            ["model", "algorithm"],
            registry=self.registry,
        )
        self.scaling_skipped = Counter(
            f"{PREFIX}_scaling_skipped",
            "Chat completions that asked for scaling (a budget above 1) and were answered "
            "unscaled, because scaling would drop what they use, by reason: tools, n, "
            "logprobs.",
            ["model", "reason"],
            registry=self.registry,
        )
        self.scaling_reward_seconds = Histogram(
            f"{PREFIX}_scaling_reward_seconds",
            "Time a scaled request spent scoring candidates.",
            ["model", "algorithm"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.scaling_added_seconds = Histogram(
            f"{PREFIX}_scaling_added_seconds",
            "Time a scaled request spent beyond generating and scoring: the gateway's own.",
            ["model", "algorithm"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight_requests",
            "Requests being forwarded to a model server right now.",
            ["model"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            f"{PREFIX}_upstream_errors",
            "Failures of model servers: unreachable, timeout, 5xx answer, or a broken stream.",
            ["model", "kind"],
            registry=self.registry,
        )
        self.upstream_retries = Counter(
            f"{PREFIX}_upstream_retries",
            "Requests sent to another endpoint of their server after a connection failed "
            "before any answer (refused, reset or closed).",
            ["model"],
            registry=self.registry,
        )
        self.held = Gauge(
            f"{PREFIX}_held_requests",
            "Requests held right now until their model (asleep or loading) serves.",
            ["model"],
            registry=self.registry,
        )
        self.hold_seconds = Histogram(
            f"{PREFIX}_hold_seconds",
            "Time a request was held for its model, whatever became of it.",
            ["model"],
            buckets=HOLD_BUCKETS,
            registry=self.registry,
        )
        self.hold_release_seconds = Histogram(
            f"{PREFIX}_hold_release_seconds",
            "For a held request that went on: from the route-table change that made its "
            "model serve (a Ready endpoint seen) to the request leaving the hold for it.",
            buckets=RELEASE_BUCKETS,
            registry=self.registry,
        )
        self.holds = Counter(
            f"{PREFIX}_holds",
            "Requests for a model that did not serve, by how their hold ended: forwarded, "
            "timeout, queue_full, client_left, failed (the model cannot be loaded).",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.load_reports = Counter(
            f"{PREFIX}_load_reports",
            "Writes of this replica's load report (its Lease), by result: written, failed.",
            ["result"],
            registry=self.registry,
        )
        self.usage_dropped = Counter(
            f"{PREFIX}_usage_records_dropped",
            "Usage records lost before the outbox had them (the database down for long).",
            registry=self.registry,
        )
        self.usage_retries = Counter(
            f"{PREFIX}_usage_delivery_retries",
            "Deliveries of usage records to the contract service that failed and wait for "
            "their next try in the outbox.",
            registry=self.registry,
        )
        self.quota_calls = Counter(
            f"{PREFIX}_quota_lease_calls",
            "Calls to the contract service's POST /leases, by purpose (principal: a "
            "principal's limits read before a request; refresh: read again in the "
            "background; grant: a slice short of a request's hold; refill: a slice refilled "
            "ahead of need; housekeeping: the pass that renews and gives back; shutdown) "
            "and result (ok, failed).",
            ["purpose", "result"],
            registry=self.registry,
        )
        self.quota_decisions = Counter(
            f"{PREFIX}_quota_decisions",
            "Inference decisions by path (local: decided in the gateway's process with no "
            "call to the contract service; contract: the request waited for one, to read "
            "the principal's limits or for a grant) and outcome (allowed, denied).",
            ["path", "outcome"],
            registry=self.registry,
        )
        self.arena_turns = Counter(
            f"{PREFIX}_arena_turns",
            "Arena battle turns by outcome: answered (both sides), void (a side failed), "
            "refused (a side refused the turn), timeout, or abandoned (the caller left).",
            ["outcome"],
            registry=self.registry,
        )
        self.arena_votes = Counter(
            f"{PREFIX}_arena_votes",
            "Arena votes by whether they count for the leaderboards, and why not.",
            ["counted", "excluded_because"],
            registry=self.registry,
        )

        # The children of the proxy's per-request metrics (`Children`).
        self.requests_of = Children(self.requests)
        self.duration_of = Children(self.duration)
        self.first_token_of = Children(self.first_token)
        self.in_flight_of = Children(self.in_flight)
        self._tokens_of = Children(self.tokens)
        self.scaling_skipped_of = Children(self.scaling_skipped)

    def record_tokens(self, user: str, model: str, prompt: int, completion: int) -> None:
        if prompt:
            self._tokens_of(user, model, "in").inc(prompt)
        if completion:
            self._tokens_of(user, model, "out").inc(completion)
