"""The admission webhook: the contract service judging ModelServe writes for the real API server.

kubectl runs as the tests' people (client certificates) and as the gateway's service
account; the test bed's kube-apiserver asks the contract service over TLS before it stores
a ModelServe, exactly as in a cluster. No operator runs: admission comes before any
controller. Each test has namespaces and user names of its own, since the service's
ledger and contracts are shared by the module.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from modelserve.common.modelserve import GROUP, KIND, OWNER_LABEL, VERSION
from modelserve.contract.admission import WEBHOOK
from modelserve.testbed.gobuild import binary
from modelserve.testbed.polling import wait_for

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.contract.conftest import AdmissionBed

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

Namespaces = Callable[..., str]
DENIED = f'admission webhook "{WEBHOOK}" denied the request:'
HOLD = "contract.modelserve.io/test-hold"  # a finalizer nobody removes but the test
RELEASE = json.dumps([{"op": "remove", "path": "/metadata/finalizers"}])


def person(name: str) -> str:
    """A user name no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


def modelserve(name: str, *, replicas: int = 1, owner: str | None = None) -> dict[str, Any]:
    """A valid llama.cpp-on-CPU ModelServe, labelled for `owner` as the gateway does."""
    metadata: dict[str, Any] = {"name": name}
    if owner is not None:
        metadata["labels"] = {OWNER_LABEL: owner}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "runtime": "llamacpp",
            "model": {
                "uri": "s3://inference-models/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "format": "gguf",
                "servedName": "smollm2-135m-instruct",
            },
            "replicas": replicas,
            "resources": {"cpu": "1", "memory": "1Gi"},
        },
    }


@dataclasses.dataclass(frozen=True)
class Kubectl:
    """kubectl with one identity's credentials."""

    kubeconfig: Path

    def run(
        self, *args: str, manifest: dict[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        if manifest is not None:
            argv += ["-f", "-"]
        return subprocess.run(
            argv,
            input=json.dumps(manifest) if manifest is not None else None,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def ok(self, *args: str, manifest: dict[str, Any] | None = None) -> str:
        result = self.run(*args, manifest=manifest)
        assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
        return result.stdout

    def refused(self, *args: str, manifest: dict[str, Any] | None = None) -> str:
        """The webhook's denial (its reason code and message) on one line."""
        result = self.run(*args, manifest=manifest)
        assert result.returncode != 0, f"kubectl {' '.join(args)} was allowed: {result.stdout}"
        text = " ".join(result.stderr.split())  # kubectl wraps long lines
        assert DENIED in text, text
        return text.split(DENIED, 1)[1].strip()


def as_person(admission: AdmissionBed, user: str) -> Kubectl:
    return Kubectl(admission.kubeconfig(user))


def modelserves(admission: AdmissionBed, namespace: str) -> dict[str, int]:
    """The ModelServes stored in `namespace`, with their replicas."""
    items = admission.kube.get_json("ms", "-n", namespace)["items"]
    return {item["metadata"]["name"]: item["spec"]["replicas"] for item in items}


def test_servers_are_created_within_the_contract_and_refused_beyond_it(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """CREATE goes through the webhook: the replica limit and the namespace allowlist of the
    person's own contract hold at `kubectl apply`."""
    mine, elsewhere = enforced_namespace(), enforced_namespace()
    alice = person("alice")
    admission.put_contract(alice, max_replicas=2, namespaces=[mine])
    kubectl = as_person(admission, alice)

    kubectl.ok("apply", "-n", mine, manifest=modelserve("small", replicas=2))
    too_many = kubectl.refused("apply", "-n", mine, manifest=modelserve("big", replicas=3))
    assert too_many.startswith("[max_replicas_exceeded]")
    assert "3 replicas is over the limit of 2" in too_many
    assert f"user {alice}" in too_many

    outside = kubectl.refused("apply", "-n", elsewhere, manifest=modelserve("small"))
    assert outside.startswith("[namespace_not_allowed]")
    assert repr(elsewhere) in outside

    assert modelserves(admission, mine) == {"small": 2}
    assert modelserves(admission, elsewhere) == {}


def test_the_scale_subresource_is_judged(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """`kubectl scale` writes only the scale subresource, which the webhook judges too."""
    namespace = enforced_namespace()
    alice = person("alice")
    admission.put_contract(alice, max_replicas=2, namespaces=[namespace])
    kubectl = as_person(admission, alice)
    kubectl.ok("apply", "-n", namespace, manifest=modelserve("smollm2", replicas=1))

    over = kubectl.refused("scale", "ms/smollm2", "--replicas=3", "-n", namespace)
    assert over.startswith("[max_replicas_exceeded]")
    assert "over the limit of 2" in over
    assert modelserves(admission, namespace) == {"smollm2": 1}

    kubectl.ok("scale", "ms/smollm2", "--replicas=2", "-n", namespace)
    assert modelserves(admission, namespace) == {"smollm2": 2}


def test_a_deleted_server_no_longer_counts(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """max_servers counts what the webhook admitted; DELETE takes the server off the ledger
    at once. A finalizer holds the deleted object (as the operator's does), so the
    inventory still lists it: only the deletion webhook can have dropped it."""
    namespace = enforced_namespace()
    alice = person("alice")
    admission.put_contract(alice, max_servers=1, namespaces=[namespace])
    kubectl = as_person(admission, alice)
    first = modelserve("first")
    first["metadata"]["finalizers"] = [HOLD]
    kubectl.ok("apply", "-n", namespace, manifest=first)

    second = kubectl.refused("apply", "-n", namespace, manifest=modelserve("second"))
    assert second.startswith("[max_servers_exceeded]")
    assert "already runs 1 servers; the limit is 1" in second

    kubectl.ok("delete", "ms/first", "-n", namespace, "--wait=false")
    try:
        terminating = admission.kube.get_json("ms/first", "-n", namespace)
        assert terminating["metadata"]["deletionTimestamp"]
        kubectl.ok("apply", "-n", namespace, manifest=modelserve("second"))
    finally:
        kubectl.ok("patch", "ms/first", "-n", namespace, "--type=json", "-p", RELEASE)
    assert modelserves(admission, namespace) == {"second": 1}


def test_a_server_side_dry_run_is_judged_but_not_recorded(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """`--dry-run=server` gets the real answer, yet leaves nothing in the ledger."""
    namespace = enforced_namespace()
    alice = person("alice")
    admission.put_contract(alice, max_servers=1, namespaces=[namespace])
    kubectl = as_person(admission, alice)

    dry = kubectl.ok("apply", "--dry-run=server", "-n", namespace, manifest=modelserve("first"))
    assert "(server dry run)" in dry
    assert modelserves(admission, namespace) == {}
    # Had the dry run been recorded, this would be alice's second server.
    kubectl.ok("apply", "-n", namespace, manifest=modelserve("second"))

    third = kubectl.refused(
        "apply", "--dry-run=server", "-n", namespace, manifest=modelserve("third")
    )
    assert third.startswith("[max_servers_exceeded]")
    assert modelserves(admission, namespace) == {"second": 1}


def test_the_gateway_acts_for_the_owner_in_the_label(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """A ModelServe the gateway writes is judged by, and counted for, the person in its
    owner label; its scale (a Scale has no labels) is judged for the owner in the ledger;
    without the label the gateway is refused."""
    namespace = enforced_namespace()
    bob = person("bob")
    admission.put_contract(bob, max_replicas=2, max_servers=1, namespaces=[namespace])
    gateway = Kubectl(admission.gateway_kubeconfig)

    big = gateway.refused(
        "apply", "-n", namespace, manifest=modelserve("big", replicas=3, owner=bob)
    )
    assert big.startswith("[max_replicas_exceeded]")
    assert f"user {bob}" in big
    # Allowed for bob: the gateway's own user has no contract and may run nothing.
    gateway.ok("apply", "-n", namespace, manifest=modelserve("first", owner=bob))

    over = gateway.refused("scale", "ms/first", "--replicas=3", "-n", namespace)
    assert over.startswith("[max_replicas_exceeded]")
    assert f"user {bob}" in over
    gateway.ok("scale", "ms/first", "--replicas=2", "-n", namespace)

    # Counted for bob: his own next server is over his max_servers.
    own = as_person(admission, bob).refused("apply", "-n", namespace, manifest=modelserve("own"))
    assert own.startswith("[max_servers_exceeded]")
    assert f"user {bob} already runs 1 servers" in own

    unowned = gateway.refused("apply", "-n", namespace, manifest=modelserve("unowned"))
    assert admission.gateway_user in unowned
    assert f"the label {OWNER_LABEL} must name them" in unowned
    assert modelserves(admission, namespace) == {"first": 2}


def test_servers_the_webhook_never_saw_are_counted_from_the_cluster(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """The inventory lists the cluster's ModelServes: a server created where the webhook is
    not asked counts for the owner in its label, and stops counting once deleted there."""
    enforced, unwatched = enforced_namespace(), enforced_namespace(labelled=False)
    carol = person("carol")
    admission.put_contract(carol, max_servers=1, namespaces=[enforced])
    kubectl = as_person(admission, carol)
    admin = Kubectl(admission.kube.kubeconfig)
    # The admin has no contract: this succeeds only because the webhook is not asked.
    admin.ok("apply", "-n", unwatched, manifest=modelserve("earlier", owner=carol))

    def next_server() -> subprocess.CompletedProcess[str]:
        return kubectl.run("apply", "--dry-run=server", "-n", enforced, manifest=modelserve("next"))

    wait_for(
        lambda: "[max_servers_exceeded]" in next_server().stderr,
        timeout=30,
        what=f"the inventory to count {unwatched}/earlier for {carol}",
    )
    refused = kubectl.refused("apply", "-n", enforced, manifest=modelserve("next"))
    assert refused.startswith("[max_servers_exceeded]")

    # Deleted unseen by the webhook too: the inventory takes it off the ledger.
    admin.ok("delete", "ms/earlier", "-n", unwatched)
    wait_for(
        lambda: next_server().returncode == 0,
        timeout=30,
        what=f"the inventory to drop {unwatched}/earlier",
    )
    kubectl.ok("apply", "-n", enforced, manifest=modelserve("next"))


def test_updates_that_change_nothing_that_runs_are_allowed(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """A contract tightened under a running server does not lock its metadata: labels still
    change, while a change of the spec is judged by the new contract."""
    namespace = enforced_namespace()
    alice = person("alice")
    admission.put_contract(alice, max_replicas=3, namespaces=[namespace])
    kubectl = as_person(admission, alice)
    kubectl.ok("apply", "-n", namespace, manifest=modelserve("smollm2", replicas=3))
    admission.put_contract(alice, max_replicas=1, namespaces=[namespace])

    kubectl.ok("label", "ms/smollm2", "team-note=kept", "-n", namespace)
    labels = admission.kube.get_json("ms/smollm2", "-n", namespace)["metadata"]["labels"]
    assert labels["team-note"] == "kept"

    patch = json.dumps({"spec": {"args": ["--ctx-size", "1024"]}})
    changed = kubectl.refused("patch", "ms/smollm2", "--type=merge", "-p", patch, "-n", namespace)
    assert changed.startswith("[max_replicas_exceeded]")
    assert "3 replicas is over the limit of 1" in changed
