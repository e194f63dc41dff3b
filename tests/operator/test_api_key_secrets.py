"""Which Secrets the operator reads for an external server's API key, on the real API
server: only those given to ModelServes by their label."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from modelserve.common.modelserve import API_KEY_LABEL
from modelserve.operator.cluster import Cluster
from modelserve.testbed.kube import KubeCluster


def test_only_secrets_labelled_for_api_keys_are_read(
    kube: KubeCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    for name, value in (("given", "key-1"), ("other", "key-2")):
        kube.kubectl(
            "create", "secret", "generic", name, "-n", namespace, f"--from-literal=api-key={value}"
        )
    kube.kubectl("label", "secret", "given", "-n", namespace, f"{API_KEY_LABEL}=true")

    async def read() -> list[str | None]:
        cluster = Cluster(kopf.OperatorSettings(), 2)
        try:
            return [
                await cluster.api_key(namespace, name, key)
                for name, key in (("given", "api-key"), ("other", "api-key"), ("given", "x"))
            ] + [await cluster.api_key(namespace, "missing", "api-key")]
        finally:
            await cluster.close()

    # Unlabelled, a Secret is not read: a ModelServe cannot name any Secret it likes.
    assert asyncio.run(read()) == ["key-1", None, None, None]
