"""The operator's /metrics after real work: the real operator process reconciles a
ModelServe on the test bed's control plane (its vLLM pod is KWOK's), and its reconcile
counters, duration histogram and phase gauge move. And what makes the llama.cpp runtime
export metrics at all."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.common.modelserve import ModelServe
from modelserve.operator.runtimes import llamacpp_container, vllm_container
from modelserve.operator.settings import OperatorSettings
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningOperator
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import tag_as_recorded
from modelserve.testbed.testing_operator import apply, manifest, wait_phase


def samples(operator: RunningOperator) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the operator's /metrics, by name and labels."""
    text = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def reconciles(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], outcome: str) -> float:
    return found.get(("modelserve_operator_reconciles_total", (("outcome", outcome),)), 0.0)


@pytest.fixture
def vllm_model(platform_store: MinioServer) -> None:
    """The vLLM example's folder in the platform store, recorded as a download leaves it."""
    uri = manifest("vllm-1gpu.yaml")["spec"]["model"]["uri"]
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    client = platform_store.client()
    client.put_object(bucket, f"{prefix}config.json", io.BytesIO(b"{}"), 2)
    digest = hashlib.sha256(b"{}").hexdigest()
    tag_as_recorded(client, bucket, f"{prefix}config.json", digest, "metrics")


def test_reconciles_their_duration_and_phases_are_counted(
    crds: KubeCluster, namespace: str, operator: RunningOperator, vllm_model: None
) -> None:
    before = samples(operator)
    # Every phase is exported from the start, even at 0.
    phases = {dict(labels)["phase"] for name, labels in before if name.endswith("_modelserves")}
    assert {"Pending", "Deploying", "Ready", "Degraded", "Failed", "Sleeping"} <= phases

    name = apply(crds, namespace, manifest("vllm-1gpu.yaml"))
    wait_phase(crds, namespace, name, "Ready")

    # The gauge counts every ModelServe of the cluster, those of other tests too (their
    # namespaces are deleted in the background): it must agree with the cluster's count.
    def ready_now() -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], int, set[str]]:
        found = samples(operator)
        items = crds.get_json("ms", "--all-namespaces")["items"]
        ready = {
            f"{ms['metadata']['namespace']}/{ms['metadata']['name']}"
            for ms in items
            if (ms.get("status") or {}).get("phase") == "Ready"
        }
        return found, len(ready), ready

    def gauge(found: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
        return found[("modelserve_operator_modelserves", (("phase", "Ready"),))]

    def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        found, in_cluster, ready = ready_now()
        return found if gauge(found) == in_cluster and f"{namespace}/{name}" in ready else None

    after = wait_for(counted, timeout=30, what="the Ready ModelServe in the phase gauge")
    assert reconciles(after, "success") >= reconciles(before, "success") + 1
    count = ("modelserve_operator_reconcile_seconds_count", ())
    assert after[count] >= before.get(count, 0.0) + 1
    assert after[("modelserve_operator_reconcile_seconds_sum", ())] > 0

    # Deleted: it leaves the gauge (the operator forgets it).
    crds.kubectl("delete", "-n", namespace, "ms", name)

    def forgotten() -> bool:
        found, in_cluster, ready = ready_now()
        return gauge(found) == in_cluster and f"{namespace}/{name}" not in ready

    wait_for(forgotten, timeout=30, what="the deleted ModelServe to leave the phase gauge")


def _modelserve(runtime: str, args: list[str] | None = None) -> ModelServe:
    spec: dict[str, Any] = {
        "runtime": runtime,
        "model": {"uri": "s3://models/m/model.gguf", "format": "gguf"},
        "args": args or [],
    }
    if runtime == "vllm":
        spec |= {"model": {"uri": "s3://models/m/"}, "resources": {"gpus": 1}}
    meta = {"name": "m", "namespace": "a", "uid": "u", "generation": 1}
    return ModelServe.from_body({"metadata": meta, "spec": spec})


def test_llama_server_is_started_with_its_metrics_endpoint_once() -> None:
    settings = OperatorSettings()
    assert llamacpp_container(_modelserve("llamacpp"), settings).args.count("--metrics") == 1
    # A user who names it too gets it once; vLLM serves /metrics without a flag.
    named = llamacpp_container(_modelserve("llamacpp", ["--metrics"]), settings)
    assert named.args.count("--metrics") == 1
    assert "--metrics" not in vllm_container(_modelserve("vllm"), settings).args
