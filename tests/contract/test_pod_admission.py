"""The admission webhook and the pod controls of a ModelServe that only platform admins may
use: kubectl as a tenant is refused with the reason, an admin's same manifest is stored."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from modelserve.common.modelserve import GROUP, KIND, OWNER_LABEL, VERSION
from modelserve.testbed.gobuild import binary

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.contract.conftest import AdmissionBed

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

Namespaces = Callable[..., str]
DENIED = re.compile(r'admission webhook "[^"]*contract\.modelserve\.io" denied the request:')


def with_spec(name: str, owner: str | None = None, **spec: Any) -> dict[str, Any]:
    """A valid llama.cpp-on-CPU ModelServe with `spec` added (labelled for `owner`)."""
    metadata: dict[str, Any] = {"name": name}
    if owner is not None:
        metadata["labels"] = {OWNER_LABEL: owner}
    model = {
        "uri": "s3://inference-models/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "format": "gguf",
        "servedName": "smollm2-135m-instruct",
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {"runtime": "llamacpp", "model": model, **spec},
    }


def apply(kubeconfig: Path, namespace: str, manifest: dict[str, Any]) -> tuple[bool, str]:
    """kubectl apply as the kubeconfig's person: whether it was stored, and the webhook's
    denial (reason code and message) on one line when it was not."""
    result = subprocess.run(
        [str(binary("kubectl")), f"--kubeconfig={kubeconfig}", "apply", "-n", namespace, "-f", "-"],
        input=json.dumps(manifest),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    text = " ".join(result.stderr.split())  # kubectl wraps long lines
    if result.returncode == 0:
        return True, ""
    assert DENIED.search(text), text
    return False, DENIED.split(text, 1)[1].strip()


def test_only_admins_choose_a_priority_class(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """A PriorityClass decides whose pods the scheduler preempts, pull Secrets are
    registry credentials of the namespace: tenants may set neither."""
    namespace = enforced_namespace()
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    admission.put_contract(alice, namespaces=[namespace])
    tenant = admission.kubeconfig(alice)
    placed = {"priorityClassName": "llm-high", "nodeSelector": {"pool": "inference"}}

    stored, refused = apply(tenant, namespace, with_spec("mine", placement=placed))
    assert not stored
    assert refused.startswith("[priority_class_not_allowed]")
    assert "spec.placement.priorityClassName" in refused
    # The rest of placement is anyone's.
    rest = with_spec("mine", placement={"nodeSelector": {"pool": "inference"}})
    assert apply(tenant, namespace, rest) == (True, "")
    # Registry credentials: a Secret of the namespace, perhaps another tenant's.
    pulled = with_spec("pulled", imagePullSecrets=[{"name": "bobs-registry"}])
    stored, refused = apply(tenant, namespace, pulled)
    assert not stored and refused.startswith("[pull_secret_not_allowed]"), refused
    admin = admission.admin_kubeconfig()
    assert apply(admin, namespace, with_spec("theirs", alice, placement=placed)) == (True, "")
    stored = admission.kube.get_json("ms", "theirs", "-n", namespace)["spec"]["placement"]
    assert stored["priorityClassName"] == "llm-high"


def test_a_tenant_s_model_cache_is_bounded_and_of_the_default_class(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """The cache is a volume the cluster provisions, and bills, as soon as it is claimed:
    a tenant's is at most CONTRACT_MAX_CACHE_SIZE (1Ti by default) and of the cluster's
    default StorageClass (CONTRACT_CACHE_STORAGE_CLASSES names none by default)."""
    namespace = enforced_namespace()
    carol = f"carol-{uuid.uuid4().hex[:6]}"
    admission.put_contract(carol, namespaces=[namespace])
    tenant = admission.kubeconfig(carol)

    def cached(name: str, owner: str | None = None, **cache: Any) -> dict[str, Any]:
        manifest = with_spec(name, owner)
        manifest["spec"]["model"]["cache"] = {"enabled": True, **cache}
        return manifest

    stored, refused = apply(tenant, namespace, cached("huge", size="2Ti"))
    assert not stored
    assert refused.startswith("[cache_not_allowed] spec.model.cache.size 2Ti is over the 1Ti")
    stored, refused = apply(tenant, namespace, cached("fast", storageClassName="premium-rwo"))
    assert not stored
    assert refused.startswith("[cache_not_allowed] spec.model.cache.storageClassName")
    assert "'premium-rwo'" in refused and "default class only" in refused
    # Within the bound, of the default class: stored; a disabled cache's size is no volume.
    assert apply(tenant, namespace, cached("mine", size="1Ti")) == (True, "")
    off = with_spec("off")
    off["spec"]["model"]["cache"] = {"enabled": False, "size": "100Ti"}
    assert apply(tenant, namespace, off) == (True, "")
    # Growing it past the bound later is refused the same way.
    stored, refused = apply(tenant, namespace, cached("mine", size="1025Gi"))
    assert not stored and refused.startswith("[cache_not_allowed]")
    admin = admission.admin_kubeconfig()
    theirs = cached("theirs", carol, size="4Ti", storageClassName="premium-rwo")
    assert apply(admin, namespace, theirs) == (True, "")


def test_a_tenant_s_pod_reserves_at_most_the_bounded_cpu_and_memory(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """What a pod requests is kept for it on its node: a tenant's server pod reserves at
    most CONTRACT_MAX_CPU (32) and CONTRACT_MAX_MEMORY (256Gi), a limit standing for the
    request where none is set (Kubernetes then requests the limit)."""
    namespace = enforced_namespace()
    erin = f"erin-{uuid.uuid4().hex[:6]}"
    admission.put_contract(erin, namespaces=[namespace])
    tenant = admission.kubeconfig(erin)

    stored, refused = apply(tenant, namespace, with_spec("cores", resources={"cpu": "33"}))
    assert not stored
    assert refused.startswith(
        "[resources_not_allowed] spec.resources.cpu 33 is over the 32 a tenant's server pod"
    )
    assert "(CONTRACT_MAX_CPU)" in refused
    only_limit = with_spec("ram", resources={"memoryLimit": "257Gi"})
    stored, refused = apply(tenant, namespace, only_limit)
    assert not stored
    assert refused.startswith("[resources_not_allowed] spec.resources.memoryLimit 257Gi")
    # At the bounds, and a limit above a request within them (a limit reserves nothing):
    # stored; growing the request past a bound later is refused the same way.
    fits = with_spec("fits", resources={"cpu": "32000m", "memory": "256Gi", "cpuLimit": 64})
    assert apply(tenant, namespace, fits) == (True, "")
    grown = with_spec("fits", resources={"cpu": "32", "memory": "300Gi"})
    stored, refused = apply(tenant, namespace, grown)
    assert not stored and refused.startswith("[resources_not_allowed] spec.resources.memory ")
    admin = admission.admin_kubeconfig()
    theirs = with_spec("theirs", erin, resources={"cpu": 200, "memory": "2Ti"})
    assert apply(admin, namespace, theirs) == (True, "")


def test_only_admins_let_a_server_take_code_or_weights_from_the_hub(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """A tokenizer of the hub with its code run in the server, or the hub's address: a
    tenant's server runs the model the platform fetched."""
    namespace = enforced_namespace()
    dan = f"dan-{uuid.uuid4().hex[:6]}"
    admission.put_contract(dan, namespaces=[namespace])
    tenant = admission.kubeconfig(dan)

    def vllm(name: str, owner: str | None = None, **spec: Any) -> dict[str, Any]:
        manifest = with_spec(name, owner, runtime="vllm", resources={"gpus": 1}, **spec)
        manifest["spec"]["model"]["uri"] = "s3://inference-models/models/smollm2/"
        return manifest

    for spec in (
        {"args": ["--tokenizer", "evil/tok", "--trust-remote-code"]},
        {"env": [{"name": "HF_ENDPOINT", "value": "http://10.0.0.9/"}]},
        {"envFrom": [{"prefix": "HF_", "configMapRef": {"name": "hub"}}]},
    ):
        stored, refused = apply(tenant, namespace, vllm("mine", **spec))
        assert not stored
        assert refused.startswith(("[flag_not_allowed]", "[owned_flag]")), refused
    admin = admission.admin_kubeconfig()
    trusted = vllm("theirs", dan, args=["--trust-remote-code"])
    assert apply(admin, namespace, trusted) == (True, "")


def test_a_tenant_s_placement_is_about_their_own_server(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """Tolerations of other taints than the GPU one (a pool kept for someone), or pod
    (anti-)affinity about other pods than the server's own: the scheduler would let a
    tenant onto nodes kept for others, or keep others' servers off the nodes it holds."""
    namespace = enforced_namespace()
    fay = f"fay-{uuid.uuid4().hex[:6]}"
    admission.put_contract(fay, namespaces=[namespace])
    tenant = admission.kubeconfig(fay)
    others = {"matchLabels": {"app.kubernetes.io/name": "modelserve-server"}}
    own = {"matchLabels": {"llm.modelserve.io/modelserve": "mine"}}
    hostname = "kubernetes.io/hostname"
    refused_placements = [
        {"tolerations": [{"operator": "Exists"}]},
        {"tolerations": [{"key": "dedicated", "value": "team-b", "effect": "NoSchedule"}]},
        {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": others, "topologyKey": hostname}]}}},
        {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": own, "topologyKey": hostname, "namespaceSelector": {}}]}}},
        {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": {"labelSelector": others,
                                              "topologyKey": hostname}}]}}},
    ]  # fmt: skip
    for placed in refused_placements:
        stored, refused = apply(tenant, namespace, with_spec("mine", placement=placed))
        assert not stored, placed
        assert refused.startswith("[placement_not_allowed]"), refused
    fine = {
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"pool": "inference"},
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"labelSelector": own, "topologyKey": hostname}}
        ]}},
    }  # fmt: skip
    assert apply(tenant, namespace, with_spec("mine", placement=fine)) == (True, "")
    admin = admission.admin_kubeconfig()
    anything = with_spec("theirs", fay, placement=refused_placements[0])
    assert apply(admin, namespace, anything) == (True, "")


def test_env_from_sets_no_owned_variable_and_reads_secrets_for_admins_only(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """The keys of a ConfigMap are not known at admission: without a prefix one could be
    LLAMA_ARG_HF_REPO and have llama.cpp download what no allowlist saw. A Secret in a
    shared namespace may be another tenant's."""
    namespace = enforced_namespace()
    bob = f"bob-{uuid.uuid4().hex[:6]}"
    admission.put_contract(bob, namespaces=[namespace])
    tenant = admission.kubeconfig(bob)

    for prefix in (None, "LLAMA_", "LLAMA_ARG_"):
        source: dict[str, Any] = {"configMapRef": {"name": "tuning"}}
        if prefix is not None:
            source["prefix"] = prefix
        stored, refused = apply(tenant, namespace, with_spec("mine", envFrom=[source]))
        assert not stored
        assert refused.startswith("[owned_flag] spec.envFrom[0] could set LLAMA_")
    # Nor the variables that choose the GPUs a container sees.
    for prefix in ("NV", "NVIDIA_", "NVIDIA_VISIBLE"):
        source = {"configMapRef": {"name": "tuning"}, "prefix": prefix}
        stored, refused = apply(tenant, namespace, with_spec("mine", envFrom=[source]))
        assert not stored
        assert "could set NVIDIA_VISIBLE_DEVICES" in refused, refused
    secret = {"secretRef": {"name": "tokens"}, "prefix": "APP_"}
    stored, refused = apply(tenant, namespace, with_spec("mine", envFrom=[secret]))
    assert not stored
    assert refused.startswith("[env_from_not_allowed] spec.envFrom[0].secretRef")

    config = {"configMapRef": {"name": "tuning"}, "prefix": "APP_"}
    assert apply(tenant, namespace, with_spec("mine", envFrom=[config])) == (True, "")
    admin = admission.admin_kubeconfig()
    both = with_spec("theirs", bob, envFrom=[config, secret])
    assert apply(admin, namespace, both) == (True, "")
    # The operator's variables bind admins too.
    unprefixed = with_spec("theirs", bob, envFrom=[{"configMapRef": {"name": "tuning"}}])
    stored, refused = apply(admin, namespace, unprefixed)
    assert not stored
    assert refused.startswith("[owned_flag]")


def test_an_image_override_is_the_contracts_to_allow(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    """spec.image runs what the platform did not build: no tenant may name one unless
    their contract's `images` patterns allow it (none by default); admins may name any."""
    namespace = enforced_namespace()
    carol, dave = (f"{who}-{uuid.uuid4().hex[:6]}" for who in ("carol", "dave"))
    admission.put_contract(carol, namespaces=[namespace])
    admission.put_contract(dave, namespaces=[namespace], images=["registry.example/llm/*"])
    mirror = "registry.example/llm/llama.cpp:server"
    elsewhere = "docker.io/someone/miner:latest"

    stored, refused = apply(admission.kubeconfig(carol), namespace, with_spec("c", image=mirror))
    assert not stored
    assert refused.startswith("[image_not_allowed]")
    assert repr(mirror) in refused
    daves = admission.kubeconfig(dave)
    assert apply(daves, namespace, with_spec("d", image=mirror)) == (True, "")
    stored, refused = apply(daves, namespace, with_spec("e", image=elsewhere))
    assert not stored
    assert refused.startswith("[image_not_allowed]")
    assert "registry.example/llm/*" in refused
    # Changing the image of an admitted server is decided again.
    stored, refused = apply(daves, namespace, with_spec("d", image=elsewhere))
    assert not stored
    assert refused.startswith("[image_not_allowed]")

    admin = admission.admin_kubeconfig()
    assert apply(admin, namespace, with_spec("a", carol, image=elsewhere)) == (True, "")
    assert admission.kube.get_json("ms", "a", "-n", namespace)["spec"]["image"] == elsewhere
    stored_names = {
        item["metadata"]["name"] for item in admission.kube.get_json("ms", "-n", namespace)["items"]
    }
    assert stored_names == {"a", "d"}
