"""Nothing stale keeps running: children the spec no longer wants are deleted, on the real
API server."""

from __future__ import annotations

import json

import pytest

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_operator import apply, get, manifest, wait_phase

pytestmark = pytest.mark.usefixtures("operator")
SELECTOR = "llm.modelserve.io/modelserve={}"
KINDS = "deployments,services,secrets,persistentvolumeclaims,ingressroutes,middlewares"


def owned(kube: KubeCluster, namespace: str, name: str) -> list[str]:
    found = get(kube, namespace, KINDS, "-l", SELECTOR.format(name))["items"]
    return sorted(f"{item['kind']}/{item['metadata']['name']}" for item in found)


def test_switching_a_server_to_external_deletes_what_ran_it(
    crds: KubeCluster, namespace: str, smollm2_uri: str
) -> None:
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml", spec__replicas=1))
    wait_phase(crds, namespace, name, "Ready")
    assert "Deployment/" + name in owned(crds, namespace, name)

    patch = {"spec": {"runtime": "external", "external": {"url": "http://127.0.0.1:9/v1"}}}
    crds.kubectl("patch", "-n", namespace, f"ms/{name}", "--type=merge", "-p", json.dumps(patch))
    wait_for(
        lambda: not owned(crds, namespace, name),
        timeout=60,
        what="the Deployment, Service, Secret and route of the server to be deleted",
    )
    wait_for(
        lambda: not get(crds, namespace, "pods", "-l", SELECTOR.format(name))["items"],
        timeout=90,
        what="its pods (and their GPUs, where it had some) to go",
    )


def test_switching_a_gpu_server_with_a_cache_to_external_frees_its_gpu_and_claim(
    crds: KubeCluster, namespace: str, smollm2_uri: str
) -> None:
    body = manifest(
        "llamacpp-cpu.yaml",
        spec__runtime="vllm",
        spec__replicas=1,
        spec__resources={"gpus": 1},
        spec__model__cache={"enabled": True, "size": "1Gi"},
    )
    name = apply(crds, namespace, body)
    wanted = {
        f"Deployment/{name}",
        f"Service/{name}",
        f"Secret/{name}-model-store",
        f"PersistentVolumeClaim/{name}-model-cache",
        f"IngressRoute/{name}",
    }
    wait_for(
        lambda: set(owned(crds, namespace, name)) == wanted,
        timeout=60,
        what="the GPU server's children",
    )
    external = {"url": "http://127.0.0.1:9/v1"}
    patch = {"spec": {"runtime": "external", "external": external, "resources": {"gpus": 0}}}
    crds.kubectl("patch", "-n", namespace, f"ms/{name}", "--type=merge", "-p", json.dumps(patch))
    wait_for(
        # A claim a pod still uses waits for it (its protection finalizer), deleted already.
        lambda: all(
            child.startswith("PersistentVolumeClaim/")
            and _deleting(crds, namespace, child.split("/")[1])
            for child in owned(crds, namespace, name)
        ),
        timeout=60,
        what="the Deployment, Service, Secret, claim and route to be deleted",
    )
    wait_for(
        lambda: not get(crds, namespace, "pods", "-l", SELECTOR.format(name))["items"],
        timeout=90,
        what="its pod (and the GPU it asked for) to go",
    )


def _deleting(kube: KubeCluster, namespace: str, claim: str) -> bool:
    found = get(kube, namespace, "persistentvolumeclaims", "--field-selector",
                f"metadata.name={claim}")["items"]  # fmt: skip
    return not found or bool(found[0]["metadata"].get("deletionTimestamp"))


def test_disabling_the_cache_leaves_no_claim(
    crds: KubeCluster, namespace: str, smollm2_uri: str
) -> None:
    cache = {"enabled": True, "size": "1Gi"}
    body = manifest("llamacpp-cpu.yaml", spec__replicas=0, spec__model__cache=cache)
    name = apply(crds, namespace, body)
    claim = f"{name}-model-cache"
    wait_for(
        lambda: get(crds, namespace, "persistentvolumeclaims")["items"],
        timeout=60,
        what="the cache claim",
    )
    body["spec"]["model"]["cache"] = {"enabled": False}
    apply(crds, namespace, body)
    wait_for(
        lambda: (
            not [
                c
                for c in get(crds, namespace, "persistentvolumeclaims")["items"]
                if c["metadata"]["name"] == claim and not c["metadata"].get("deletionTimestamp")
            ]
        ),
        timeout=60,
        what="the claim of the disabled cache to be deleted",
    )
    volumes = get(crds, namespace, "deployment", name)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model", "emptyDir": {}} in volumes


def test_a_child_kind_no_longer_built_is_deleted(
    crds: KubeCluster, namespace: str, smollm2_uri: str
) -> None:
    """An earlier version made forward-auth Middlewares; what it left behind goes."""
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml", spec__replicas=0))
    ms = wait_for(
        lambda: get(crds, namespace, "ms", name).get("status") and get(crds, namespace, "ms", name),
        timeout=60,
        what="a first status",
    )
    labels = get(crds, namespace, "deployment", name)["metadata"]["labels"]
    owner = {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "name": name,
        "uid": ms["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    for middleware in (f"{name}-auth", "not-ours"):
        body = {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "Middleware",
            "metadata": {
                "name": middleware,
                "labels": labels,
                # Only what this ModelServe owns is pruned; a look-alike without the
                # owner reference stays.
                "ownerReferences": [owner] if middleware != "not-ours" else [],
            },
            "spec": {"stripPrefix": {"prefixes": ["/x"]}},
        }
        apply(crds, namespace, body)
    # A spec change: the operator reconciles and finds what it no longer builds.
    patch = '{"spec": {"env": [{"name": "A", "value": "1"}]}}'
    crds.kubectl("patch", "-n", namespace, f"ms/{name}", "--type=merge", "-p", patch)
    wait_for(
        lambda: (
            [m["metadata"]["name"] for m in get(crds, namespace, "middlewares")["items"]]
            == ["not-ours"]
        ),
        timeout=60,
        what="the old Middleware to be deleted",
    )
