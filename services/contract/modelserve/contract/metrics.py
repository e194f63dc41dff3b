"""The contract service's Prometheus metrics, on a registry of the app's own (one process
serves the API and the webhook: every count is in it)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from modelserve.common.service_metrics import request_histogram
from modelserve.contract.leases import LeaseAnswer, LeaseRequest
from modelserve.contract.policy import Action, Decision


class ContractMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = request_histogram("contract", self.registry)
        self.decisions = Counter(
            "modelserve_contract_decisions",
            "Decisions, by source (decide: answers of POST /decide; admission: the "
            "validating webhook's answers to the API server), action, outcome (allowed, "
            "denied) and reason (the stable code: allowed, admin, model_not_allowed, ...).",
            ["source", "action", "outcome", "reason"],
            registry=self.registry,
        )
        self.lease_grants = Counter(
            "modelserve_contract_lease_grants",
            "Slices of a limited counter granted to a gateway process (POST /leases), by "
            "metric (requests/minute, tokens/minute, tokens/day, ...); a want granted "
            "nothing is not counted.",
            ["metric"],
            registry=self.registry,
        )
        self.leased = Counter(
            "modelserve_contract_leased",
            "The amount those granted slices held (requests or tokens), by metric.",
            ["metric"],
            registry=self.registry,
        )
        self.lease_renewals = Counter(
            "modelserve_contract_lease_renewals",
            "Leases renewed by their holder (POST /leases `renew`, found and still live).",
            registry=self.registry,
        )
        self.lease_returns = Counter(
            "modelserve_contract_lease_returns",
            "Leases given back by their holder (POST /leases `give_back`).",
            registry=self.registry,
        )

    def decided(self, action: Action, decision: Decision) -> None:
        outcome = "allowed" if decision.allowed else "denied"
        self.decisions.labels("decide", action.value, outcome, decision.reason.value).inc()

    def admitted(self, action: Action | None, allowed: bool, reason: str) -> None:
        """One answer of the validating webhook; `action` is None for a review refused
        before its operation was known (counted as action `unknown`)."""
        outcome = "allowed" if allowed else "denied"
        named = action.value if action is not None else "unknown"
        self.decisions.labels("admission", named, outcome, reason).inc()

    def leased_out(self, request: LeaseRequest, answer: LeaseAnswer) -> None:
        for lease in answer.leases:
            if lease.lease is not None and lease.granted > 0:
                self.lease_grants.labels(lease.metric).inc()
                self.leased.labels(lease.metric).inc(lease.granted)
        self.lease_renewals.inc(len(answer.renewed))
        self.lease_returns.inc(len(request.give_back))
