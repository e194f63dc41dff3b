"""/metrics: Prometheus' text format with the gateway's conventional names, and a token
when one is configured. (Counts after real traffic: test_proxy.py.) Also: a gateway
without a cluster starts, and serves no model."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.common.tokens import TokenSigner
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.testbed.platform import RunningService

NAMES = {
    "modelserve_gateway_requests": "counter",
    "modelserve_gateway_request_duration_seconds": "histogram",
    "modelserve_gateway_time_to_first_token_seconds": "histogram",
    "modelserve_gateway_tokens": "counter",
    "modelserve_gateway_in_flight_requests": "gauge",
    "modelserve_gateway_upstream_errors": "counter",
    "modelserve_gateway_upstream_retries": "counter",
    "modelserve_gateway_usage_records_dropped": "counter",
    "modelserve_gateway_usage_delivery_retries": "counter",
    "modelserve_gateway_quota_lease_calls": "counter",
    "modelserve_gateway_quota_decisions": "counter",
    "modelserve_gateway_arena_turns": "counter",
    "modelserve_gateway_arena_votes": "counter",
    "modelserve_gateway_scaling_requests": "counter",
    "modelserve_gateway_scaling_budget": "histogram",
    "modelserve_gateway_scaling_upstream_calls": "counter",
    "modelserve_gateway_scaling_skipped": "counter",
    "modelserve_gateway_scaling_reward_seconds": "histogram",
    "modelserve_gateway_scaling_added_seconds": "histogram",
    "modelserve_gateway_held_requests": "gauge",
    "modelserve_gateway_hold_seconds": "histogram",
    "modelserve_gateway_hold_release_seconds": "histogram",
    "modelserve_gateway_holds": "counter",
    "modelserve_gateway_load_reports": "counter",
}


def test_metric_names_and_kinds() -> None:
    metrics = GatewayMetrics()
    metrics.record_tokens("alice", "qwen", 5, 0)
    families = {family.name: family for family in metrics.registry.collect()}
    assert {name: family.type for name, family in families.items()} == NAMES
    samples = families["modelserve_gateway_tokens"].samples
    totals = [s for s in samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in totals] == [
        ({"user": "alice", "model": "qwen", "direction": "in"}, 5.0)
    ]
    assert GatewayMetrics().registry is not metrics.registry  # one registry per app


@pytest.mark.postgres
def test_a_gateway_without_a_cluster_serves_no_model_and_guards_its_metrics(
    signer: TokenSigner, start_gateway: Callable[..., RunningService]
) -> None:
    gateway = start_gateway(KUBECONFIG="", GATEWAY_METRICS_TOKEN="scrape-token-1")
    headers = {"Authorization": f"Bearer {signer.sign('alice')}"}
    with httpx.Client(base_url=gateway.url, headers=headers) as http:
        assert http.get("/v1/models").json() == {"object": "list", "data": []}
        missing = http.post(
            "/v1/chat/completions",
            json={"model": "qwen", "messages": [{"role": "user", "content": "Hi"}]},
        )
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"

    assert httpx.get(f"{gateway.url}/metrics").status_code == 401
    wrong = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    scraped = httpx.get(
        f"{gateway.url}/metrics", headers={"Authorization": "Bearer scrape-token-1"}
    )
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(scraped.text)}
    assert set(NAMES) <= set(families)
    requests = [
        s
        for s in families["modelserve_gateway_requests"].samples
        if s.name.endswith("_total") and s.value
    ]
    assert [(s.labels["route"], s.labels["status"], s.labels["model"]) for s in requests] == [
        ("/v1/chat/completions", "404", "")
    ]
