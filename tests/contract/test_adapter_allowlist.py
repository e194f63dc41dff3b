"""LoRA adapters at the contract's admission webhook, through the real API server: clients
name an adapter as a model, so a contract's model allowlist holds for each adapter's name
(and for the model record its weights come from), as it does for the served name."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from modelserve.common.modelserve import GROUP, KIND, VERSION
from modelserve.contract.policy import Action, Resource, Scope, check_request
from modelserve.contract.tables import Limits
from modelserve.testbed.gobuild import binary

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.contract.conftest import AdmissionBed

Namespaces = Callable[..., str]
DENIED = re.compile(r'admission webhook "[^"]*contract\.modelserve\.io" denied the request:')
STORE = "s3://inference-models/models"


def with_adapters(name: str, adapters: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A llama.cpp ModelServe of SmolLM2 (served as smollm2-135m-instruct) with `adapters`."""
    model = {
        "uri": f"{STORE}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "format": "gguf",
        "servedName": "smollm2-135m-instruct",
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"runtime": "llamacpp", "model": model, "adapters": adapters, **spec},
    }


def apply(kubeconfig: Path, namespace: str, manifest: dict[str, Any]) -> tuple[bool, str]:
    """kubectl apply as the kubeconfig's person: whether it was stored, and the webhook's
    denial on one line when it was not."""
    result = subprocess.run(
        [str(binary("kubectl")), f"--kubeconfig={kubeconfig}", "apply", "-n", namespace, "-f", "-"],
        input=json.dumps(manifest),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    text = " ".join(result.stderr.split())
    if result.returncode == 0:
        return True, ""
    assert DENIED.search(text), text
    return False, DENIED.split(text, 1)[1].strip()


def test_the_policy_checks_each_adapters_name_and_record() -> None:
    """The pure rule: every adapter's name, then every adapter's record id."""
    scope = Scope(key="user:alice", label="user alice", limits=Limits(models=["smollm2*"]))
    fine = Resource(model="smollm2-135m", adapters=["smollm2-pirate"], adapter_ids=["smollm2-p"])
    assert check_request(Action.SERVE, fine, scope) is None
    named = fine.model_copy(update={"adapters": ["smollm2-pirate", "pirate"]})
    refused = check_request(Action.SERVE, named, scope)
    assert refused is not None and refused.reason == "model_not_allowed"
    assert refused.message == "user alice may not use adapter 'pirate' (allowed: smollm2*)"
    recorded = fine.model_copy(update={"adapter_ids": ["pirate-lora"]})
    refused = check_request(Action.SERVE, recorded, scope)
    assert refused is not None
    assert refused.message == (
        "user alice may not use adapter model id 'pirate-lora' (allowed: smollm2*)"
    )


@pytest.mark.kube
@pytest.mark.postgres
def test_an_adapter_the_contract_does_not_allow_refuses_the_modelserve(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    namespace = enforced_namespace()
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    admission.put_contract(alice, namespaces=[namespace], models=["smollm2*"])
    tenant = admission.kubeconfig(alice)

    pirate = {"name": "pirate", "uri": f"{STORE}/smollm2-pirate/pirate.gguf"}
    stored, refused = apply(tenant, namespace, with_adapters("adapted", [pirate]))
    assert not stored
    assert (
        refused
        == f"[model_not_allowed] user {alice} may not use adapter 'pirate' (allowed: smollm2*)"
    )

    elsewhere = {"name": "smollm2-pirate", "uri": f"{STORE}/pirate-lora/pirate.gguf"}
    stored, refused = apply(tenant, namespace, with_adapters("adapted", [elsewhere]))
    assert not stored
    assert refused.startswith(
        f"[model_not_allowed] user {alice} may not use adapter model id 'pirate-lora'"
    )

    outside = {"name": "smollm2-pirate", "uri": "s3://scratch/pirate.gguf"}
    stored, refused = apply(tenant, namespace, with_adapters("adapted", [outside]))
    assert not stored
    assert refused == (
        f"[model_uri_refused] spec.adapters[0].uri 's3://scratch/pirate.gguf' is not under {STORE}/"
    )

    allowed = {"name": "smollm2-pirate", "uri": f"{STORE}/smollm2-pirate/pirate.gguf"}
    assert apply(tenant, namespace, with_adapters("adapted", [allowed])) == (True, "")
    stored_spec = admission.kube.get_json("ms", "adapted", "-n", namespace)["spec"]
    assert stored_spec["adapters"] == [{**allowed, "scale": 1.0}]


@pytest.mark.kube
@pytest.mark.postgres
def test_adapters_are_the_operators_flags(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """An adapter loaded through args would have no name the allowlist sees (and shift
    the ids the gateway applies adapters by): --lora and --lora-scaled are refused."""
    namespace = enforced_namespace()
    bob = f"bob-{uuid.uuid4().hex[:6]}"
    admission.put_contract(bob, namespaces=[namespace])
    tenant = admission.kubeconfig(bob)
    for flag in ("--lora", "--lora-scaled"):
        manifest = with_adapters("flagged", [], args=[flag, "/models/x.gguf"])
        stored, refused = apply(tenant, namespace, manifest)
        assert not stored
        assert refused.startswith(f"[owned_flag] spec.args may not set {flag}")
