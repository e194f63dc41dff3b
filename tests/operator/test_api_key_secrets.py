"""Which Secrets the operator reads for an external server's API key, on the real API
server: only those given to ModelServes by their label, and only for the hosts they name."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from modelserve.common.modelserve import API_KEY_HOSTS_ANNOTATION, API_KEY_LABEL
from modelserve.operator.cluster import Cluster
from modelserve.operator.probing import ApiKey, api_key_for
from modelserve.testbed.kube import KubeCluster

URL = "https://api.example.internal:8443/v1"


def test_only_secrets_labelled_for_api_keys_are_read(
    kube: KubeCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    for name, value in (("given", "key-1"), ("other", "key-2")):
        kube.kubectl(
            "create", "secret", "generic", name, "-n", namespace, f"--from-literal=api-key={value}"
        )
        annotation = f"{API_KEY_HOSTS_ANNOTATION}=api.example.internal:8443"
        kube.kubectl("annotate", "secret", name, "-n", namespace, annotation)
    kube.kubectl("label", "secret", "given", "-n", namespace, f"{API_KEY_LABEL}=true")

    async def read() -> list[ApiKey]:
        cluster = Cluster(kopf.OperatorSettings(), 2)
        try:
            return [
                api_key_for(await cluster.read_secret(namespace, name), namespace, key, URL)
                for name, key in (("given", "api-key"), ("other", "api-key"), ("given", "x"))
            ] + [api_key_for(await cluster.read_secret(namespace, "missing"), namespace, "k", URL)]
        finally:
            await cluster.close()

    # Unlabelled, a Secret is not read: a ModelServe cannot name any Secret it likes.
    assert [key.value for key in asyncio.run(read())] == ["key-1", None, None, None]


def secret(annotations: dict[str, str] | None) -> dict[str, object]:
    return {
        "metadata": {
            "name": "key",
            "labels": {API_KEY_LABEL: "true"},
            "annotations": annotations or {},
        },
        "data": {"api-key": "c2stMTIz"},  # sk-123
    }


@pytest.mark.parametrize(
    ("hosts", "url", "sent"),
    [
        ("api.openai.com", "https://api.openai.com/v1", True),
        ("api.openai.com", "https://api.openai.com:8443/v1", False),
        ("api.openai.com,example.internal:8443", "https://example.internal:8443/v1", True),
        ("example.internal:8443", "https://example.internal/v1", False),
        ("api.openai.com", "https://api.openai.com@evil.example/v1", False),
        ("api.openai.com", "https://evil.example/v1?api.openai.com", False),
        ("API.OpenAI.com", "https://api.openai.com./v1", True),
        (None, "https://api.openai.com/v1", False),
    ],
)
def test_a_key_goes_only_to_the_hosts_its_secret_names(
    hosts: str | None, url: str, sent: bool
) -> None:
    annotations = {API_KEY_HOSTS_ANNOTATION: hosts} if hosts is not None else None
    key = api_key_for(secret(annotations), "ns", "api-key", url)
    assert (key.value == "sk-123") is sent
    assert (key.refused is not None) is not sent
    if not sent:
        assert API_KEY_HOSTS_ANNOTATION in (key.refused or "")
