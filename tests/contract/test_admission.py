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
import re
import ssl
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from modelserve.common.modelserve import GROUP, KIND, OWNER_LABEL, TEAM_LABEL, VERSION
from modelserve.common.rollouts import ROLLOUT_ANNOTATION
from modelserve.contract.admission import PATH
from modelserve.testbed.gobuild import binary
from modelserve.testbed.pki import KeyPair
from modelserve.testbed.polling import wait_for

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.contract.conftest import AdmissionBed

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

Namespaces = Callable[..., str]
# Any of the service's webhooks: the deletion and the mutating one answer with their names.
ANY_DENIED = re.compile(r'admission webhook "[^"]*contract\.modelserve\.io" denied the request:')
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
        assert ANY_DENIED.search(text), text
        return ANY_DENIED.split(text, 1)[1].strip()


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


def test_an_autoscaled_server_counts_its_most_replicas(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """With spec.autoscaling the operator may run up to maxReplicas without asking anyone:
    the contract's limits count that many at `kubectl apply`."""
    namespace = enforced_namespace()
    alice = person("alice")
    admission.put_contract(alice, max_replicas=2, namespaces=[namespace])
    kubectl = as_person(admission, alice)
    sleeper = modelserve("sleeper", replicas=0)
    sleeper["spec"]["autoscaling"] = {"minReplicas": 0, "maxReplicas": 3}

    over = kubectl.refused("apply", "-n", namespace, manifest=sleeper)
    assert over.startswith("[max_replicas_exceeded]")
    assert "3 replicas is over the limit of 2" in over

    sleeper["spec"]["autoscaling"]["maxReplicas"] = 2
    kubectl.ok("apply", "-n", namespace, manifest=sleeper)
    assert modelserves(admission, namespace) == {"sleeper": 0}


def test_only_admins_pin_a_model_or_raise_its_priority(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """A pinned model is never put to sleep for another, and a higher priority puts others'
    models to sleep: tenants may not decide that for each other."""
    namespace = enforced_namespace()
    alice = person("alice")
    admission.put_contract(alice, namespaces=[namespace])
    kubectl = as_person(admission, alice)
    for autoscaling in ({"minReplicas": 0, "pinned": True}, {"minReplicas": 0, "priority": 5}):
        wanted = modelserve("mine")
        wanted["spec"]["autoscaling"] = autoscaling
        refused = kubectl.refused("apply", "-n", namespace, manifest=wanted)
        assert refused.startswith("[autoscaling_not_allowed]")
    plain = modelserve("mine")
    plain["spec"]["autoscaling"] = {"minReplicas": 0}
    kubectl.ok("apply", "-n", namespace, manifest=plain)
    pinned = modelserve("mine", owner=alice)
    pinned["spec"]["autoscaling"] = {"minReplicas": 0, "pinned": True}
    Kubectl(admission.admin_kubeconfig()).ok("apply", "-n", namespace, manifest=pinned)
    assert admission.kube.get_json("ms", "mine", "-n", namespace)["spec"]["autoscaling"]["pinned"]


def test_a_deleted_server_no_longer_counts(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """max_servers counts what the webhook admitted; DELETE takes the server off the ledger
    at once. A finalizer (an admin's: a tenant may set none) holds the deleted object, so
    the inventory still lists it: only the deletion webhook can have dropped it."""
    namespace = enforced_namespace()
    alice = person("alice")
    admission.put_contract(alice, max_servers=1, namespaces=[namespace])
    kubectl = as_person(admission, alice)
    admin = Kubectl(admission.admin_kubeconfig())
    kubectl.ok("apply", "-n", namespace, manifest=modelserve("first"))
    hold = json.dumps({"metadata": {"finalizers": [HOLD]}})
    admin.ok("patch", "ms/first", "-n", namespace, "--type=merge", "-p", hold)

    second = kubectl.refused("apply", "-n", namespace, manifest=modelserve("second"))
    assert second.startswith("[max_servers_exceeded]")
    assert "already runs 1 servers; the limit is 1" in second

    kubectl.ok("delete", "ms/first", "-n", namespace, "--wait=false")
    try:
        terminating = admission.kube.get_json("ms/first", "-n", namespace)
        assert terminating["metadata"]["deletionTimestamp"]
        kubectl.ok("apply", "-n", namespace, manifest=modelserve("second"))
    finally:
        admin.ok("patch", "ms/first", "-n", namespace, "--type=json", "-p", RELEASE)
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


# --- Trust boundaries (issue 14) ------------------------------------------------------


def test_nobody_but_the_owner_changes_or_deletes_a_server(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """A second user with RBAC in the same namespace, within every limit of their own, may
    not scale, patch, relabel or delete the first user's server; admins may."""
    namespace = enforced_namespace()
    alice, bob = person("alice"), person("bob")
    for who in (alice, bob):
        admission.put_contract(who, max_replicas=3, namespaces=[namespace])
    as_person(admission, alice).ok("apply", "-n", namespace, manifest=modelserve("hers"))
    kubectl = as_person(admission, bob)

    attempts = [
        ("scale", "ms/hers", "--replicas=2"),
        ("patch", "ms/hers", "--type=merge", "-p", json.dumps({"spec": {"replicas": 3}})),
        ("patch", "ms/hers", "--type=merge", "-p", json.dumps({"spec": {"args": ["--temp", "2"]}})),
        ("label", "ms/hers", "note=bob-was-here"),
        ("label", "--overwrite", "ms/hers", f"{OWNER_LABEL}={bob}"),
        # Metadata alone, but not anyone's: an owner reference to an object of bob's would
        # have the garbage collector delete her server with it; a finalizer would keep her
        # from deleting it.
        ("patch", "ms/hers", "--type=merge", "-p", json.dumps({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "bobs", "uid": str(uuid.uuid4())}
        ]}})),
        ("patch", "ms/hers", "--type=merge", "-p",
         json.dumps({"metadata": {"finalizers": ["example.com/bob"]}})),
        # Her annotations: the version she runs, what the operator last handled.
        ("annotate", "ms/hers", "llm.modelserve.io/model-version=bobs"),
        ("annotate", "ms/hers", "llm.modelserve.io/last-handled-configuration={}"),
        ("delete", "ms/hers", "--wait=false"),
    ]  # fmt: skip
    for args in attempts:
        refused = kubectl.refused(*args, "-n", namespace)
        if "finalizers" in " ".join(args):  # nobody's but admins', the owner's neither
            assert refused.startswith("[finalizer_not_allowed]"), (args, refused)
            continue
        assert refused.startswith("[not_owner]"), (args, refused)
        assert f"belongs to {alice}" in refused
    stored = admission.kube.get_json("ms/hers", "-n", namespace)
    assert stored["spec"]["replicas"] == 1
    assert stored["metadata"]["labels"] == {OWNER_LABEL: alice}
    assert "ownerReferences" not in stored["metadata"] and "finalizers" not in stored["metadata"]
    assert "llm.modelserve.io/model-version" not in (stored["metadata"].get("annotations") or {})

    as_person(admission, alice).ok("scale", "ms/hers", "--replicas=2", "-n", namespace)
    as_person(admission, alice).ok("annotate", "ms/hers", "note=mine", "-n", namespace)
    # The operator keeps kopf's state in annotations (CONTRACT_OPERATOR_USERS), and no more.
    operator = Kubectl(admission.kubeconfig("system:serviceaccount:modelserve:modelserve-operator"))
    operator.ok("annotate", "ms/hers", "llm.modelserve.io/last-handled-configuration={}",
                "-n", namespace)  # fmt: skip
    refused = operator.refused(
        "patch", "ms/hers", "--type=merge", "-p",
        json.dumps({"metadata": {"finalizers": ["example.com/operator"]}}), "-n", namespace,
    )  # fmt: skip
    assert refused.startswith("[finalizer_not_allowed]"), refused
    admin = Kubectl(admission.admin_kubeconfig())
    admin.ok("label", "ms/hers", "reviewed=yes", "-n", namespace)
    admin.ok("delete", "ms/hers", "-n", namespace)


def test_no_tenant_keeps_a_deleted_server_running_for_free(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """The ledger stops counting a server once it is deleted: a finalizer of the owner's
    (the object stays Terminating, its Deployment with it) or an orphaning delete (its
    Deployment stays) would keep its pods and GPUs counted against no one."""
    namespace = enforced_namespace()
    erin = person("erin")
    admission.put_contract(erin, namespaces=[namespace])
    owner = as_person(admission, erin)
    held = modelserve("held")
    held["metadata"]["finalizers"] = ["example.com/keep"]
    refused = owner.refused("apply", "-n", namespace, manifest=held)
    assert refused.startswith("[finalizer_not_allowed]"), refused
    owner.ok("apply", "-n", namespace, manifest=modelserve("mine"))
    refused = owner.refused(
        "patch", "ms/mine", "--type=merge", "-p",
        json.dumps({"metadata": {"finalizers": ["example.com/keep"]}}), "-n", namespace,
    )  # fmt: skip
    assert refused.startswith("[finalizer_not_allowed]"), refused
    refused = owner.refused("delete", "ms/mine", "--cascade=orphan", "-n", namespace)
    assert refused.startswith("[orphan_not_allowed]"), refused
    owner.ok("delete", "ms/mine", "--wait=false", "-n", namespace)


def test_only_the_gateway_and_admins_set_a_servers_rollout_id(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """The rollout id names a change the registry made (set_active): a rollback of that
    rollout, which the gateway reports, moves the name's active version back. Nobody else
    sets it: not on a create, not by annotating a server, theirs or another's (an
    annotation-only update is otherwise allowed). Left as it is, or removed, it is
    anyone's to keep."""
    namespace = enforced_namespace()
    alice, bob = person("alice"), person("bob")
    for who in (alice, bob):
        admission.put_contract(who, max_replicas=3, namespaces=[namespace])
    owner = as_person(admission, alice)
    forged = modelserve("forged")
    forged["metadata"]["annotations"] = {ROLLOUT_ANNOTATION: "7"}
    assert owner.refused("apply", "-n", namespace, manifest=forged).startswith(
        "[rollout_annotation_forged]"
    )
    owner.ok("apply", "-n", namespace, manifest=modelserve("hers"))
    for kubectl in (owner, as_person(admission, bob)):
        refused = kubectl.refused("annotate", "ms/hers", f"{ROLLOUT_ANNOTATION}=7", "-n", namespace)
        assert refused.startswith("[rollout_annotation_forged]"), refused
        assert "POST /models/set_active" in refused

    gateway = Kubectl(admission.gateway_kubeconfig)
    gateway.ok("annotate", "ms/hers", f"{ROLLOUT_ANNOTATION}=7", "-n", namespace)
    # Kept as it is through the owner's other changes; removed by them if they like.
    owner.ok("annotate", "ms/hers", "note=mine", "-n", namespace)
    owner.refused("annotate", "--overwrite", "ms/hers", f"{ROLLOUT_ANNOTATION}=8", "-n", namespace)
    owner.ok("annotate", "ms/hers", f"{ROLLOUT_ANNOTATION}-", "-n", namespace)
    Kubectl(admission.admin_kubeconfig()).ok(
        "annotate", "ms/hers", f"{ROLLOUT_ANNOTATION}=9", "-n", namespace
    )
    stored = admission.kube.get_json("ms/hers", "-n", namespace)["metadata"]["annotations"]
    assert (stored[ROLLOUT_ANNOTATION], stored["note"]) == ("9", "mine")


def test_owner_and_team_labels_name_the_requester(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """The owner label is stamped from the requester; a label naming someone else (or a
    team one is not in) is refused, on create and on a label-only update."""
    namespace = enforced_namespace()
    alice, bob = person("alice"), person("bob")
    team = person("nlp")
    for who in (alice, bob):
        admission.put_contract(who, namespaces=[namespace])
    kubectl = Kubectl(admission.kubeconfig(bob, teams=(team,)))

    forged = kubectl.refused("apply", "-n", namespace, manifest=modelserve("x", owner=alice))
    assert forged.startswith("[owner_label_forged]")
    assert f"must name you ({bob})" in forged
    other_team = modelserve("y")
    other_team["metadata"]["labels"] = {TEAM_LABEL: "not-my-team"}
    refused = kubectl.refused("apply", "-n", namespace, manifest=other_team)
    assert refused.startswith("[team_label_forged]")

    kubectl.ok("apply", "-n", namespace, manifest=modelserve("mine"))
    labels = admission.kube.get_json("ms/mine", "-n", namespace)["metadata"]["labels"]
    assert labels == {OWNER_LABEL: bob, TEAM_LABEL: team}
    relabel = kubectl.refused(
        "label", "--overwrite", "ms/mine", f"{OWNER_LABEL}={alice}", "-n", namespace
    )
    assert relabel.startswith("[owner_label_forged]")
    steal_team = kubectl.refused(
        "label", "--overwrite", "ms/mine", f"{TEAM_LABEL}=admins", "-n", namespace
    )
    assert steal_team.startswith("[team_label_forged]")
    # Without its team label the server would count against no team's totals.
    dropped = kubectl.refused("label", "ms/mine", f"{TEAM_LABEL}-", "-n", namespace)
    assert dropped.startswith("[team_label_removed]")

    # A Kubernetes user name that cannot be a label value cannot own a server.
    odd = Kubectl(admission.kubeconfig(f"oidc:{bob}"))
    invalid = odd.refused("apply", "-n", namespace, manifest=modelserve("odd"))
    assert invalid.startswith("[invalid_owner]")
    assert set(modelserves(admission, namespace)) == {"mine"}

    # A create with generateName (the request names no object): decided, not a 500.
    generated = modelserve("unused")
    generated["metadata"] = {"generateName": "gen-"}
    kubectl.ok("create", "-n", namespace, manifest=generated)
    names = set(modelserves(admission, namespace)) - {"mine"}
    assert len(names) == 1 and names.pop().startswith("gen-"), names


def test_a_namespace_with_users_servers_is_deleted_whole(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """Deleting a namespace deletes its ModelServes through Kubernetes' namespace
    controller, which owns none of them: the webhook lets Kubernetes' own controllers
    delete (as it lets the owner), or the namespace would stay Terminating for good."""
    namespace = enforced_namespace()
    alice = person("alice")
    admission.put_contract(alice, max_replicas=3, namespaces=[namespace])
    as_person(admission, alice).ok("apply", "-n", namespace, manifest=modelserve("hers"))
    admission.kube.kubectl("delete", "namespace", namespace, "--wait=false")

    def gone() -> bool:
        found = admission.kube.get_json("namespaces")["items"]
        return namespace not in {item["metadata"]["name"] for item in found}

    try:
        wait_for(gone, timeout=90, interval=0.5, what=f"namespace {namespace} to be deleted")
    except TimeoutError as error:
        conditions = admission.kube.get_json(f"namespace/{namespace}").get("status", {})
        raise AssertionError(f"{namespace} stays: {conditions}") from error


def test_platform_namespaces_are_for_platform_admins(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    namespace = enforced_namespace(name=admission.platform_namespace)
    alice = person("alice")
    admission.put_contract(alice, namespaces=["*"])
    refused = as_person(admission, alice).refused(
        "apply", "-n", namespace, manifest=modelserve("reward")
    )
    assert refused.startswith("[platform_namespace]")
    admin = Kubectl(admission.admin_kubeconfig())
    admin.ok("apply", "-n", namespace, manifest=modelserve("reward", owner=alice))
    for args in (("scale", "ms/reward", "--replicas=2"), ("delete", "ms/reward")):
        denied = as_person(admission, alice).refused(*args, "-n", namespace)
        assert denied.startswith("[platform_namespace]")
    admin.ok("delete", "ms/reward", "-n", namespace)
    # The namespace itself deleted: Kubernetes' namespace controller deletes the
    # ModelServes in it, which the webhook lets it do there too.
    admin.ok("apply", "-n", namespace, manifest=modelserve("left", owner=alice))
    admission.kube.kubectl("delete", "namespace", namespace, "--wait=false")

    def gone() -> bool:
        found = admission.kube.get_json("namespaces")["items"]
        return namespace not in {item["metadata"]["name"] for item in found}

    wait_for(gone, timeout=90, interval=0.5, what=f"the platform namespace {namespace} to go")


def test_what_runs_is_bounded_by_the_platform_not_the_args(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """Weights only from the platform's model prefix, allowed by model id as well as by
    served name; no operator-owned flag in args; `external` for admins only."""
    namespace = enforced_namespace()
    alice = person("alice")
    admission.put_contract(alice, namespaces=[namespace], models=["smollm2*"])
    kubectl = as_person(admission, alice)

    def with_spec(name: str, **spec: Any) -> dict[str, Any]:
        manifest = modelserve(name)
        manifest["spec"].update(spec)
        return manifest

    def with_uri(name: str, uri: str) -> dict[str, Any]:
        manifest = modelserve(name)
        manifest["spec"]["model"]["uri"] = uri
        return manifest

    outside = kubectl.refused(
        "apply", "-n", namespace, manifest=with_uri("a", "s3://other/models/smollm2/m.gguf")
    )
    assert outside.startswith("[model_uri_refused]")
    dotted = "s3://inference-models/models/smollm2/../llama-70b/m.gguf"
    assert kubectl.refused("apply", "-n", namespace, manifest=with_uri("b", dotted)).startswith(
        "[model_uri_refused]"
    )
    # The served name is allowed, the weights (model id llama-70b) are not.
    llama = with_uri("c", "s3://inference-models/models/llama-70b/m.gguf")
    weights = kubectl.refused("apply", "-n", namespace, manifest=llama)
    assert weights.startswith("[model_not_allowed]")
    assert "model id 'llama-70b'" in weights

    for args, flag in ((["--port=9000"], "--port=9000"), (["-hf", "x/y"], "-hf")):
        owned = kubectl.refused("apply", "-n", namespace, manifest=with_spec("d", args=args))
        assert owned.startswith("[owned_flag]")
        assert f"may not set {flag}" in owned
    # $(A) is the kubelet's to expand, after this check: A=--api-key=x would slip through.
    expanded = with_spec("d", args=["$(A)"], env=[{"name": "A", "value": "--api-key=x"}])
    refused = kubectl.refused("apply", "-n", namespace, manifest=expanded)
    assert refused.startswith("[arg_expansion]") and "'$(A)'" in refused
    # The NVIDIA runtime would show the container every GPU of the node.
    every_gpu = with_spec("d", env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}])
    refused = kubectl.refused("apply", "-n", namespace, manifest=every_gpu)
    assert refused.startswith("[owned_flag]") and "NVIDIA_VISIBLE_DEVICES" in refused

    external = with_spec(
        "e", runtime="external", external={"url": "http://127.0.0.1:1/v1"}, model={}
    )
    external["spec"]["model"] = {"servedName": "smollm2-external"}
    refused = kubectl.refused("apply", "-n", namespace, manifest=external)
    assert refused.startswith("[external_not_allowed]")
    # The model that scores a scaled model's answers is a model it uses: every scaled
    # request calls it. Another than the contract allows is refused.
    judged = with_spec(
        "f", scaling={"algorithm": "best-of-n", "budget": 4, "rewardModel": "qwen-prm"}
    )
    reward = kubectl.refused("apply", "-n", namespace, manifest=judged)
    assert reward.startswith("[model_not_allowed]")
    assert "reward model 'qwen-prm'" in reward
    assert modelserves(admission, namespace) == {}
    kubectl.ok("apply", "-n", namespace, manifest=modelserve("fine"))
    judged["spec"]["scaling"]["rewardModel"] = "smollm2-judge"
    kubectl.ok("apply", "-n", namespace, manifest=judged)


# --- The webhook endpoint itself: only the API server reaches it, and it writes nothing.
# These tests call it as the API server does (with the client certificate of the test
# bed's AdmissionConfiguration) and as others would.


def review(
    operation: str, namespace: str, name: str, user: str, groups: list[str], **objects: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "operation": operation,
            "namespace": namespace,
            "name": name,
            "userInfo": {"username": user, "groups": groups},
            **objects,
        },
    }


def presenting(pair: KeyPair | None) -> ssl.SSLContext:
    """A TLS client context that presents `pair` (none: no certificate). The server's
    identity is not what these tests are about: it is not checked."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    return context


def as_api_server(admission: AdmissionBed) -> httpx.Client:
    context = presenting(admission.kube.webhook_client)
    assert admission.kube.webhook_client is not None
    return httpx.Client(base_url=admission.webhook_url, verify=context, timeout=30)


def test_only_the_api_server_reaches_the_webhook(admission: AdmissionBed) -> None:
    """Not on the API port; on the TLS port, not without a client certificate, not with a
    certificate of the cluster's CA (every user has one), not with another subject of the
    webhook client CA."""
    body = review("DELETE", "default", "x", "someone", [])
    on_api_port = httpx.post(f"{admission.service.url}{PATH}", json=body, timeout=30)
    assert on_api_port.status_code == 404, on_api_port.text

    kube = admission.kube
    assert kube.webhook_authority is not None
    strangers = [
        None,
        kube.authority.issue(f"user-{uuid.uuid4().hex[:6]}", "alice", client=True),
        kube.webhook_authority.issue(f"other-{uuid.uuid4().hex[:6]}", "alice", client=True),
    ]
    for pair in strangers:
        with (
            httpx.Client(base_url=admission.webhook_url, verify=presenting(pair)) as stranger,
            pytest.raises(httpx.TransportError),
        ):
            stranger.post(PATH, json=body)

    with as_api_server(admission) as api_server:
        answer = api_server.post(PATH, json=body)
        assert answer.status_code == 200
        assert answer.json()["response"]["allowed"] is False  # no owner label: not someone's
        assert api_server.get("/health").status_code == 404
        assert api_server.post("/decide", json={}).status_code == 404


def test_malformed_reviews_are_answered_not_crashed_on(admission: AdmissionBed) -> None:
    with as_api_server(admission) as api_server:
        for content in (b"", b"not json", b"[]", b"{}", json.dumps({"request": {}}).encode()):
            answer = api_server.post(PATH, content=content)
            assert answer.status_code == 400, (content, answer.text)
            assert answer.json()["error"]["code"] == "invalid_admission_review"
        odd = review("CREATE", "default", "x", "alice", [], object=[1])
        answer = api_server.post(PATH, json=odd)
        assert answer.status_code == 200
        denial = answer.json()["response"]
        assert denial["allowed"] is False
        assert denial["status"]["message"].startswith("[invalid_review]")
        nul = review("CREATE", "default", "x", "a\x00b", [], object={})
        assert api_server.post(PATH, json=nul).json()["response"]["allowed"] is False
        mutated = api_server.post(f"{PATH}/mutate", content=b"{}")
        assert mutated.status_code == 400


def test_reviews_write_nothing_the_ledger_follows_the_cluster(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """A review is a question: a DELETE review (the API server may still refuse the delete,
    or a forger may send one) does not free a quota, and a CREATE review by an admin does
    not hand someone's server to them. Only what the cluster holds counts."""
    namespace = enforced_namespace()
    alice, bob = person("alice"), person("bob")
    admission.put_contract(alice, max_servers=1, namespaces=[namespace])
    kubectl = as_person(admission, alice)
    kubectl.ok("apply", "-n", namespace, manifest=modelserve("hers"))
    second = kubectl.refused("apply", "-n", namespace, manifest=modelserve("second"))
    assert second.startswith("[max_servers_exceeded]")

    stored = admission.kube.get_json("ms/hers", "-n", namespace)
    deletion = review("DELETE", namespace, "hers", alice, [], oldObject=stored)
    grab = modelserve("hers", owner=bob)
    grab["metadata"]["namespace"] = namespace
    grab["metadata"]["uid"] = stored["metadata"]["uid"]
    creation = review("CREATE", namespace, "hers", bob, ["modelserve:admins"], object=grab)
    with as_api_server(admission) as api_server:
        for body in (deletion, creation):
            answer = api_server.post(PATH, json=body).json()["response"]
            assert answer["allowed"] is True, answer
    # Still counted, still hers.
    again = kubectl.refused("apply", "-n", namespace, manifest=modelserve("second"))
    assert again.startswith("[max_servers_exceeded]")
    scaled = as_person(admission, bob).refused("scale", "ms/hers", "--replicas=2", "-n", namespace)
    assert scaled.startswith("[not_owner]")
    assert f"belongs to {alice}" in scaled
    labels = admission.kube.get_json("ms/hers", "-n", namespace)["metadata"]["labels"]
    assert labels == {OWNER_LABEL: alice}
