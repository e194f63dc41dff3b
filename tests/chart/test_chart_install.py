"""The chart installed into the test bed's cluster: install, helm test, upgrade, uninstall.

KWOK plays the kubelets: pods become Running once scheduled (a helm test pod Succeeded),
so this proves what Kubernetes does with the chart (scheduling, volumes bound by the real
PV controller, rollouts, garbage), not that the containers start. The test bed has no
volume provisioner: the module makes static PersistentVolumes of a storage class of its
own and points the chart's PostgreSQL and MinIO at it.

The tests run in file order on one release: install, helm test, upgrade, uninstall.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from modelserve.testbed.helm import CHART, Helm
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.polling import wait_for

pytestmark = pytest.mark.kube

WAIT = ("--wait", "--timeout", "5m")
# What a namespace holds without anything installed in it.
NAMESPACE_DEFAULTS = {"ConfigMap/kube-root-ca.crt", "ServiceAccount/default"}
# What the cluster writes about what happened; not the chart's to clean up.
RECORDS = {"Event"}
WEBHOOKS = ("mutatingwebhookconfiguration", "validatingwebhookconfiguration")


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    storage_class: str
    notes: str


def _servers(release: str) -> str:
    """The namespace where the release's ModelServes live (its serverNamespaces)."""
    return f"{release}-servers"


def _values(release: str, storage_class: str) -> dict[str, Any]:
    persistence = {"storageClass": storage_class, "size": "1Gi"}
    return {
        # A namespace of its own, which the chart makes (and keeps on uninstall).
        "serverNamespaces": [_servers(release)],
        "postgresql": {"persistence": persistence},
        "minio": {"persistence": persistence},
        # Only namespaces labelled for this release: the contract pod is simulated and
        # cannot answer, and other tests on this cluster create ModelServes.
        "contract": {
            "webhook": {"namespaceSelector": {"matchLabels": {"modelserve-chart-test": release}}}
        },
    }


@pytest.fixture(scope="module")
def release(
    cluster_helm: Helm, crds: KubeCluster, static_storage: Callable[[str, int], Any]
) -> Iterator[Release]:
    name = f"modelserve-{uuid.uuid4().hex[:6]}"
    storage_class = f"{name}-test"
    storage = static_storage(storage_class, 2)
    values = cluster_helm.values_file(_values(name, storage_class), name)
    notes = cluster_helm(
        "install", name, str(CHART), "-n", name, "--create-namespace", "-f", str(values), *WAIT
    )
    yield Release(name, name, storage_class, notes)
    cluster_helm("uninstall", name, "-n", name, "--ignore-not-found", "--wait")
    crds.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")
    crds.kubectl("delete", "namespace", _servers(name), "--ignore-not-found", "--wait=false")
    storage.delete()


def _items(kube: KubeCluster, kind: str, namespace: str) -> list[dict[str, Any]]:
    return list(kube.get_json(kind, "-n", namespace)["items"])


def test_install_brings_every_pod_to_running(release: Release, crds: KubeCluster) -> None:
    # The gateway's autoscaler is opt-in: by default its Deployment runs gateway.replicas.
    assert not _items(crds, "horizontalpodautoscalers", release.namespace)
    gateway = crds.get_json("deployment", f"{release.name}-gateway", "-n", release.namespace)
    assert gateway["spec"]["replicas"] == 2
    pods = _items(crds, "pods", release.namespace)
    by_component: dict[str, int] = {}
    for pod in pods:
        assert pod["status"]["phase"] == "Running", pod["metadata"]["name"]
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        by_component[component] = by_component.get(component, 0) + 1
    assert by_component == {
        "operator": 1,
        "gateway": 2,
        "contract": 2,
        "download": 1,
        "jobs": 2,
        "postgresql": 1,
        "minio": 1,
    }
    for deployment in _items(crds, "deployments", release.namespace):
        assert deployment["status"].get("availableReplicas") == deployment["spec"]["replicas"]
    for stateful in _items(crds, "statefulsets", release.namespace):
        assert stateful["status"].get("readyReplicas") == 1
    claims = _items(crds, "pvc", release.namespace)
    assert sorted(claim["status"]["phase"] for claim in claims) == ["Bound", "Bound"]
    assert {claim["spec"]["storageClassName"] for claim in claims} == {release.storage_class}


def test_install_notes_tell_how_to_get_a_token_and_call(release: Release) -> None:
    assert f"get secret {release.name}-auth" in release.notes
    assert "/auth/token" in release.notes
    assert "/v1/chat/completions" in release.notes
    assert f"svc/{release.name}-gateway 8200:8200" in release.notes


def test_cluster_wide_objects_are_the_release_s(release: Release, crds: KubeCluster) -> None:
    for component in ("operator", "gateway", "contract"):
        role = crds.get_json("clusterrole", f"{release.name}-{component}")
        assert role["metadata"]["annotations"]["meta.helm.sh/release-name"] == release.name
    for kind in WEBHOOKS:
        webhook = crds.get_json(kind, f"{release.name}-contract")
        assert webhook["webhooks"][0]["clientConfig"]["service"]["namespace"] == release.namespace
    route = crds.get_json("ingressroute", f"{release.name}-gateway", "-n", release.namespace)
    assert route["spec"]["routes"][0]["services"][0]["port"] == 8200


def _allowed(kube: KubeCluster, account: str, verb: str, namespace: str) -> bool:
    """The API server's answer to `account` asking to `verb` Secrets in `namespace`."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": account,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "resource": "secrets", "namespace": namespace},
        },
    }
    answer = json.loads(kube.kubectl("create", "-o", "json", stdin=json.dumps(review)))
    return bool(answer["status"].get("allowed"))


def test_secrets_only_in_the_server_namespaces(release: Release, crds: KubeCluster) -> None:
    servers = crds.get_json("namespace", _servers(release.name))
    assert servers["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    account = f"system:serviceaccount:{release.namespace}:{release.name}"
    for where in (_servers(release.name), release.namespace):
        assert _allowed(crds, f"{account}-operator", "create", where)
        assert _allowed(crds, f"{account}-gateway", "get", where)
    for where in ("default", "kube-system", ""):
        for component in ("operator", "gateway", "contract", "download", "jobs"):
            assert not _allowed(crds, f"{account}-{component}", "get", where), (component, where)
    for component in ("contract", "download", "jobs"):
        assert not _allowed(crds, f"{account}-{component}", "get", release.namespace)
    policy = crds.get_json(
        "networkpolicy", f"{release.name}-model-servers", "-n", _servers(release.name)
    )
    assert policy["spec"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/managed-by": "modelserve-operator"}
    }


def test_helm_test_calls_the_gateway(release: Release, cluster_helm: Helm) -> None:
    out = cluster_helm("test", release.name, "-n", release.namespace, "--timeout", "2m")
    assert "Phase:          Succeeded" in out or "Phase: Succeeded" in " ".join(out.split())


def _workloads(kube: KubeCluster, namespace: str) -> dict[str, dict[str, Any]]:
    return {
        f"{kind}/{item['metadata']['name']}": item
        for kind in ("deployment", "statefulset")
        for item in _items(kube, kind, namespace)
    }


def _secret_data(kube: KubeCluster, namespace: str) -> dict[str, dict[str, str]]:
    """The chart's Secrets (not helm's records of its releases)."""
    return {
        item["metadata"]["name"]: item["data"]
        for item in _items(kube, "secrets", namespace)
        if item["type"] != "helm.sh/release.v1"
    }


def test_upgrade_rolls_what_changed_and_keeps_the_credentials(
    release: Release, cluster_helm: Helm, crds: KubeCluster
) -> None:
    before = _workloads(crds, release.namespace)
    secrets = _secret_data(crds, release.namespace)
    bundles = [crds.get_json(kind, f"{release.name}-contract") for kind in WEBHOOKS]
    gateway = f"deployment/{release.name}-gateway"

    cluster_helm(
        "upgrade",
        release.name,
        str(CHART),
        "-n",
        release.namespace,
        "--reuse-values",
        "--set",
        "gateway.upstreamReadTimeout=120",
        *WAIT,
    )

    after = _workloads(crds, release.namespace)
    assert set(after) == set(before)
    for name, workload in after.items():
        changed = workload["spec"]["template"] != before[name]["spec"]["template"]
        assert changed is (name == gateway), name
        if name != gateway:
            assert workload["metadata"]["generation"] == before[name]["metadata"]["generation"]
    config = crds.get_json("configmap", f"{release.name}-gateway", "-n", release.namespace)
    assert config["data"]["GATEWAY_UPSTREAM_READ_TIMEOUT"] == "120"
    # Generated once, kept: the signing key, passwords and the webhook's certificates
    # (its serving one and the API server's client CA) still work.
    assert sorted(secrets) == sorted(
        f"{release.name}-{name}"
        for name in (
            "auth",
            "jwt-key",
            "postgresql",
            "minio",
            "contract-webhook",
            "webhook-client",
        )
    )
    assert _secret_data(crds, release.namespace) == secrets
    for kind, bundle in zip(WEBHOOKS, bundles, strict=True):
        webhook = crds.get_json(kind, f"{release.name}-contract")
        assert [hook["clientConfig"]["caBundle"] for hook in webhook["webhooks"]] == [
            hook["clientConfig"]["caBundle"] for hook in bundle["webhooks"]
        ]
    # The server namespace the first install made is still the release's.
    assert crds.get_json("roles", "-n", _servers(release.name))["items"]
    # The new gateway pods replaced the old ones.
    selector = f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=gateway"
    sets = crds.get_json("replicasets", "-n", release.namespace, "-l", selector)["items"]
    assert sorted(item["status"]["replicas"] for item in sets) == [0, 2]
    wait_for(
        lambda: all(
            pod["status"]["phase"] == "Running"
            and pod["metadata"]["annotations"]["checksum/config"]
            == after[gateway]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for pod in crds.get_json("pods", "-n", release.namespace, "-l", selector)["items"]
        ),
        timeout=60,
        what="the gateway's pods of the new configuration",
    )


def _namespaced_kinds(kube: KubeCluster) -> list[str]:
    out = kube.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name")
    return sorted(line for line in out.split() if line)


def _leftovers(kube: KubeCluster, namespace: str) -> set[str]:
    kinds = ",".join(_namespaced_kinds(kube))
    items = json.loads(kube.kubectl("get", kinds, "-n", namespace, "-o", "json"))["items"]
    return {
        f"{item['kind']}/{item['metadata']['name']}"
        for item in items
        if item["kind"] not in RECORDS
    }


def test_uninstall_leaves_only_what_is_documented(
    release: Release, cluster_helm: Helm, crds: KubeCluster
) -> None:
    cluster_helm("uninstall", release.name, "-n", release.namespace, "--wait")
    claims = {
        f"PersistentVolumeClaim/data-{release.name}-{store}-0" for store in ("postgresql", "minio")
    }
    expected = NAMESPACE_DEFAULTS | claims
    wait_for(
        lambda: _leftovers(crds, release.namespace) == expected,
        timeout=60,
        what="the namespace to hold only the volumes' claims",
    )
    for kind in ("clusterrole", "clusterrolebinding", *WEBHOOKS):
        names = crds.kubectl("get", kind, "-o", "name")
        assert f"/{release.name}-" not in names, kind
    # The server namespace stays (it holds users' servers), without the release's grants.
    servers = _servers(release.name)
    assert crds.get_json("namespace", servers)["status"]["phase"] == "Active"
    for kind in ("roles", "rolebindings", "networkpolicies"):
        assert crds.get_json(kind, "-n", servers)["items"] == [], kind
    # The CRD stays, and with it every ModelServe.
    crds.kubectl("get", "crd", "modelserves.llm.modelserve.io")
