"""Which changes of an external ModelServe make the operator forget its last probe."""

from __future__ import annotations

from typing import Any

import httpx

from modelserve.common.modelserve import ModelServe
from modelserve.operator.probing import ApiKey, ExternalProber
from modelserve.operator.status import ProbeResult


def external(**spec: Any) -> ModelServe:
    body = {
        "metadata": {"name": "hosted", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {
            "runtime": "external",
            "model": {"servedName": "smollm2"},
            "external": {"url": "http://llm:8080/v1"},
            **spec,
        },
    }
    return ModelServe.from_body(body)


async def no_key(_: ModelServe) -> ApiKey:
    return ApiKey()


def test_only_what_is_probed_resets_the_result() -> None:
    prober = ExternalProber(httpx.AsyncClient(), 1.0, no_key, lambda _: None)
    key = ("ns", "hosted")
    prober.track(external())
    prober.results[key] = ProbeResult(True, "serves smollm2")

    # Scaling defaults (the gateway's /configure) or replicas: still in service.
    prober.track(external(scaling={"algorithm": "best-of-n", "budget": 4}, replicas=2))
    assert prober.results[key].ok

    # Another URL, served name or key: the old result says nothing of the new server.
    for changed in (
        {"external": {"url": "http://elsewhere:8080/v1"}},
        {"model": {"servedName": "other"}},
        {"external": {"url": "http://llm:8080/v1", "apiKeySecretRef": {"name": "k"}}},
    ):
        prober.results[key] = ProbeResult(True, "serves smollm2")
        prober.track(external(**changed))
        assert key not in prober.results
        prober.track(external())
