"""The download service's /metrics after real work: the real service copies one model from
the upstream store into the platform store and fails another on its checksum, and its
attempt, failure, byte and request counters move; with a token, /metrics needs it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService
from modelserve.testbed.testing_clients import token_clients

pytestmark = [pytest.mark.postgres, pytest.mark.minio]

TOKEN = "download-metrics-token"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(service: RunningService) -> Samples:
    answer = httpx.get(
        f"{service.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_attempts_failures_bytes_and_requests_are_counted(
    start_download: Callable[..., RunningService],
    signer: TokenSigner,
    upstream_store: MinioServer,
    upstream_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    service = start_download(DOWNLOAD_METRICS_TOKEN=TOKEN)
    assert httpx.get(f"{service.url}/metrics", timeout=10).status_code == 401

    good = os.urandom(7 << 20)  # two parts of 5 MiB
    upstream_store.put(
        upstream_bucket, "good/model.gguf", good, sha256=hashlib.sha256(good).hexdigest()
    )
    bad = os.urandom(1 << 20)
    upstream_store.put(upstream_bucket, "bad/model.gguf", bad, sha256="0" * 64)

    with token_clients(signer) as make:
        admin = make(service.url, "root", roles=("admin",))
        ready = admin.post("/downloads", json={"bucket": upstream_bucket, "key": "good/model.gguf"})
        failed = admin.post("/downloads", json={"bucket": upstream_bucket, "key": "bad/model.gguf"})
        assert ready.status_code in (200, 201, 202), ready.text
        assert wait_finished(admin, ready.json()["model_id"])["state"] == "ready"
        job = wait_finished(admin, failed.json()["model_id"])
        assert job["state"] == "failed" and job["error"]["code"] == "checksum_mismatch"
        status = admin.get(f"/status/{ready.json()['model_id']}")
        assert status.status_code == 200

    found = samples(service)

    def value(name: str, **labels: str) -> float:
        return found.get((name, tuple(sorted(labels.items()))), 0.0)

    attempts = "modelserve_download_attempts_total"
    assert value(attempts, kind="download", outcome="ready") == 1
    assert value(attempts, kind="download", outcome="failed") == 1
    assert value("modelserve_download_failures_total", code="checksum_mismatch") == 1
    seconds = "modelserve_download_attempt_seconds_count"
    assert value(seconds, kind="download", outcome="ready") == 1
    # The good model's bytes at least (the bad one's copy may be cut short or not).
    assert value("modelserve_download_copied_bytes_total", kind="download") >= len(good)
    assert value("modelserve_download_attempts_running") == 0
    requests = "modelserve_download_request_duration_seconds_count"
    assert value(requests, method="POST", route="/downloads", status=str(ready.status_code)) == 2
    # Route templates, never ids: one series for every model's status.
    assert value(requests, method="GET", route="/status/{model_id}", status="200") >= 3
