"""The contract service's /metrics after real work: a real service on real PostgreSQL,
with a metrics token, decides, grants and renews leases, and its counters move; the
contract service registered as the real API server's admission webhook counts the
reviews that kubectl's writes send it."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.common.modelserve import GROUP, KIND, VERSION
from modelserve.common.tokens import TokenSigner
from modelserve.testbed.gobuild import binary
from modelserve.testbed.platform import RunningService, start_service
from modelserve.testbed.testing_clients import token_clients

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.contract.conftest import AdmissionBed

TOKEN = "contract-metrics-token"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def service(
    contract_environment: Callable[..., dict[str, str]], testbed_dir: Path
) -> Iterator[RunningService]:
    running = start_service(
        "contract", testbed_dir / "logs", contract_environment(CONTRACT_METRICS_TOKEN=TOKEN)
    )
    yield running
    running.stop()


@pytest.fixture
def gateway(service: RunningService, signer: TokenSigner) -> Iterator[httpx.Client]:
    with token_clients(signer) as make:
        yield make(service.url, "service:gateway", roles=("service",))


@pytest.fixture
def admin(service: RunningService, signer: TokenSigner) -> Iterator[httpx.Client]:
    with token_clients(signer) as make:
        yield make(service.url, "root", roles=("admin",))


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


def total(found: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (each, got), value in found.items() if each == name and wanted <= set(got))


def test_metrics_need_the_token(service: RunningService) -> None:
    assert httpx.get(f"{service.url}/metrics", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    answer = httpx.get(f"{service.url}/metrics", headers=wrong, timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "token_invalid"


def test_decisions_leases_and_request_times_are_counted(
    service: RunningService, gateway: httpx.Client, admin: httpx.Client, user: str
) -> None:
    limited = admin.put(f"/contracts/user/{user}", json={"tokens_per_minute": 1000})
    assert limited.status_code == 200, limited.text
    before = samples(service)
    decide = {"principal": {"subject": user}, "action": "infer", "dry_run": True}
    allowed = gateway.post("/decide", json={**decide, "resource": {"model": "m"}})
    assert allowed.status_code == 200 and allowed.json()["allowed"], allowed.text
    denied = gateway.post(
        "/decide",
        json={
            "principal": {"subject": user, "teams": []},
            "action": "serve",
            "resource": {"namespace": "kube-system", "name": "x", "model": "m"},
            "dry_run": True,
        },
    )
    assert denied.status_code == 200 and not denied.json()["allowed"], denied.text
    reason = denied.json()["reason"]

    want = {"scope": f"user:{user}", "metric": "tokens/minute", "amount": 7}
    first = gateway.post(
        "/leases", json={"holder": "metrics-test", "principal": {"subject": user}, "want": [want]}
    )
    assert first.status_code == 200, first.text
    (lease,) = first.json()["leases"]
    assert lease["granted"] == 7, lease
    renewed = gateway.post("/leases", json={"holder": "metrics-test", "renew": [lease["lease"]]})
    assert renewed.status_code == 200 and renewed.json()["renewed"] == [lease["lease"]]

    after = samples(service)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    decisions = "modelserve_contract_decisions_total"
    assert moved(decisions, action="infer", outcome="allowed", reason="allowed") == 1
    assert moved(decisions, action="serve", outcome="denied", reason=reason) == 1
    assert moved(decisions, source="decide") == 2
    assert moved(decisions, source="admission") == 0
    assert moved("modelserve_contract_lease_grants_total", metric="tokens/minute") == 1
    assert moved("modelserve_contract_leased_total", metric="tokens/minute") == 7
    assert moved("modelserve_contract_lease_renewals_total") == 1
    seconds = "modelserve_contract_request_duration_seconds_count"
    assert moved(seconds, method="POST", route="/decide", status="200") == 2
    assert moved(seconds, method="POST", route="/leases", status="200") == 2
    # Route templates, never raw paths: one series per route whatever the ids.
    assert not [labels for name, labels in after if name == seconds and user in str(labels)]


def _server(name: str, **spec: Any) -> dict[str, Any]:
    """A llama.cpp-on-CPU ModelServe with `spec` added."""
    model = {
        "uri": "s3://inference-models/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "format": "gguf",
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"runtime": "llamacpp", "model": model, **spec},
    }


def _kubectl(kubeconfig: Path, namespace: str, *args: str, manifest: Any = None) -> str:
    """kubectl as the kubeconfig's person: its stderr, empty when it succeeded."""
    result = subprocess.run(
        [str(binary("kubectl")), f"--kubeconfig={kubeconfig}", "-n", namespace, *args],
        input=None if manifest is None else json.dumps(manifest),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return "" if result.returncode == 0 else " ".join(result.stderr.split())


@pytest.mark.kube
@pytest.mark.postgres
def test_admission_reviews_are_counted_as_decisions(
    admission: AdmissionBed, enforced_namespace: Callable[..., str]
) -> None:
    """A tenant's create, refused create and delete through the API server: each is one
    answer of the validating webhook, counted with source `admission`."""
    namespace = enforced_namespace()
    tenant_name = f"alice-{uuid.uuid4().hex[:6]}"
    admission.put_contract(tenant_name, namespaces=[namespace])
    tenant = admission.kubeconfig(tenant_name)
    before = samples(admission.service)

    assert _kubectl(tenant, namespace, "create", "-f", "-", manifest=_server("mine")) == ""
    placed = _server("placed", placement={"priorityClassName": "llm-high"})
    refused = _kubectl(tenant, namespace, "create", "-f", "-", manifest=placed)
    assert "denied the request: [priority_class_not_allowed]" in refused, refused
    assert _kubectl(tenant, namespace, "delete", "ms", "mine", "--wait=false") == ""

    after = samples(admission.service)

    def moved(**labels: str) -> float:
        name = "modelserve_contract_decisions_total"
        return total(after, name, **labels) - total(before, name, **labels)

    allowed = {"outcome": "allowed", "reason": "allowed"}
    assert moved(source="admission", action="serve", **allowed) == 1
    refusal = {"outcome": "denied", "reason": "priority_class_not_allowed"}
    assert moved(source="admission", action="serve", **refusal) == 1
    assert moved(source="admission", action="stop", **allowed) == 1
    assert moved(source="admission") == 3
    assert moved(source="decide") == 0
