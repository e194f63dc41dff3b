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
            "Answers of POST /decide, by action, outcome (allowed, denied) and reason (the "
            "Decision's stable code: allowed, admin, model_not_allowed, ...).",
            ["action", "outcome", "reason"],
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
        self.decisions.labels(action.value, outcome, decision.reason.value).inc()

    def leased_out(self, request: LeaseRequest, answer: LeaseAnswer) -> None:
        for lease in answer.leases:
            if lease.lease is not None and lease.granted > 0:
                self.lease_grants.labels(lease.metric).inc()
                self.leased.labels(lease.metric).inc(lease.granted)
        self.lease_renewals.inc(len(answer.renewed))
        self.lease_returns.inc(len(request.give_back))
