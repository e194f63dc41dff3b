"""The model servers dashboard queries only metrics the runtimes really export.

llama.cpp: the names come from the real `llama-server` of the test bed, started with
`--metrics` as the operator starts it, after one real chat completion.

vLLM (no GPU here to run it): the names are those of vLLM's V1 engine as its documentation
lists them (https://docs.vllm.ai/en/stable/usage/metrics/, "Production Metrics"), checked
against its Prometheus logger (vllm-project/vllm, vllm/v1/metrics/loggers.py,
`PrometheusStatLogger`): the gauges below, counters exposed with `_total`, histograms with
`_bucket`, `_sum`, `_count`. `vllm:gpu_cache_usage_perc` is left out on purpose: deprecated
since 0.9 for `vllm:kv_cache_usage_perc` and hidden in later versions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.gateway.metrics import GatewayMetrics
from modelserve.testbed.helm import Helm, find
from modelserve.testbed.llama_server import start_llama_server

RELEASE = "modelserve"
NAMESPACE = "modelserve"
VLLM_GAUGES = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
}
VLLM_COUNTERS = {
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:num_preemptions",
    "vllm:request_success",
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
}
VLLM_HISTOGRAMS = {
    "vllm:time_to_first_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds",
    "vllm:request_inference_time_seconds",
    "vllm:request_prompt_tokens",
    "vllm:request_generation_tokens",
}
VLLM_EXPORTED = (
    VLLM_GAUGES
    | {name + "_total" for name in VLLM_COUNTERS}
    | {name + suffix for name in VLLM_HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)
NAME = re.compile(r"\b(?:vllm|llamacpp):[a-z0-9_:]+|\bmodelserve_gateway_[a-z0-9_]+")


@pytest.fixture(scope="module")
def dashboard(offline_helm: Helm) -> dict[str, Any]:
    config = find(offline_helm.template(RELEASE, NAMESPACE), "ConfigMap", f"{RELEASE}-dashboard")
    found: dict[str, Any] = json.loads(config["data"]["modelserve-model-servers.json"])
    return found


@pytest.fixture(scope="module")
def llama_cpp_exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Every sample name of a real llama-server's /metrics, after one real completion."""
    server = start_llama_server(
        tmp_path_factory.mktemp("llama-metrics"), parallel=2, context=2048, options=["--metrics"]
    )
    try:
        answer = httpx.post(
            f"{server.url}/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=30).text
    finally:
        server.stop()
    yield {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def _queries(dashboard: dict[str, Any]) -> list[str]:
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert panels and all(panel["targets"] for panel in panels)
    variables = [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    return [target["expr"] for panel in panels for target in panel["targets"]] + variables


def _used(dashboard: dict[str, Any], prefix: str) -> set[str]:
    return {
        name
        for query in _queries(dashboard)
        for name in NAME.findall(query)
        if name.startswith(prefix)
    }


def test_every_vllm_name_is_one_vllm_documents(dashboard: dict[str, Any]) -> None:
    used = _used(dashboard, "vllm:")
    assert used and used <= VLLM_EXPORTED, used - VLLM_EXPORTED
    # Queue, KV-cache use and time to first token, as the issue asks.
    assert {
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_bucket",
    } <= used


def test_every_llama_cpp_name_is_one_the_real_server_exports(
    dashboard: dict[str, Any], llama_cpp_exported: set[str]
) -> None:
    assert "llamacpp:requests_processing" in llama_cpp_exported
    used = _used(dashboard, "llamacpp:")
    assert used and used <= llama_cpp_exported, used - llama_cpp_exported
    assert {"llamacpp:requests_deferred", "llamacpp:prompt_seconds_total"} <= used


def test_gateway_names_are_the_gateway_s_own(dashboard: dict[str, Any]) -> None:
    exposed: set[str] = set()
    for family in GatewayMetrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        exposed |= {family.name + suffix for suffix in suffixes.get(family.type, [""])}
    used = _used(dashboard, "modelserve_gateway_")
    assert used and used <= exposed, used - exposed


def test_panels_select_by_the_pod_monitor_s_labels(dashboard: dict[str, Any]) -> None:
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "modelserve"} <= names
    server_queries = [q for q in _queries(dashboard) if re.search(r"(vllm|llamacpp):", q)]
    for query in server_queries:
        if not query.startswith("label_values"):
            assert 'modelserve=~"$modelserve"' in query, query
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_chart_ships_the_file_it_renders(dashboard: dict[str, Any]) -> None:
    shipped = Path(__file__).parents[2] / "charts/modelserve/files/dashboards/model-servers.json"
    assert json.loads(shipped.read_text()) == dashboard
