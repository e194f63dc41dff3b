"""`helm upgrade` from the previous release's chart (0.1.0) to this one, and back.

0.1.0 comes from tests/chart/fixtures/modelserve-0.1.0.tgz (the chart as released; see the
README there), so that the test needs no git history. It is installed into the test bed's
cluster (KWOK nodes: pods run without containers) with the values a user would give, and
state is made that must survive: a ModelServe, the generated credentials, the volumes of
PostgreSQL and MinIO. Then `helm upgrade` to the chart in the tree with the same values
file, and `helm rollback` to 0.1.0. The tests run in file order on one release.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.testbed.helm import CHART, Helm
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.polling import wait_for

pytestmark = pytest.mark.kube

PREVIOUS = Path(__file__).parent / "fixtures" / "modelserve-0.1.0.tgz"
CURRENT_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
WAIT = ("--wait", "--timeout", "5m")
SERVICES = ("gateway", "contract", "download", "jobs")
# helm's records of its releases, and what the cluster writes about what happened.
NOT_THE_CHART_S = {"Event"}


@dataclass(frozen=True)
class State:
    """What 0.1.0's install left that must outlive an upgrade and a rollback."""

    secrets: dict[str, dict[str, str]]
    claims: dict[str, str]  # name: uid
    volumes: dict[str, str]  # claim name: the volume bound to it
    model_serve: str  # its uid


@dataclass(frozen=True)
class Release:
    name: str
    servers: str
    values: Path
    state: State


def _values(release: str, storage_class: str, servers: str) -> dict[str, Any]:
    """What a user gives: their namespaces and storage, and (for the simulated cluster,
    whose contract pods cannot answer) a webhook only for namespaces labelled for it."""
    persistence = {"storageClass": storage_class, "size": "1Gi"}
    return {
        "serverNamespaces": [servers],
        "postgresql": {"persistence": persistence},
        "minio": {"persistence": persistence},
        "contract": {
            "webhook": {"namespaceSelector": {"matchLabels": {"modelserve-chart-test": release}}}
        },
    }


def _items(kube: KubeCluster, kind: str, namespace: str, *more: str) -> list[dict[str, Any]]:
    return list(kube.get_json(kind, "-n", namespace, *more)["items"])


def _secret_data(kube: KubeCluster, namespace: str) -> dict[str, dict[str, str]]:
    return {
        item["metadata"]["name"]: item["data"]
        for item in _items(kube, "secrets", namespace)
        if item["type"] != "helm.sh/release.v1"
    }


def _model_serve(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name},
        "spec": {
            "runtime": "llamacpp",
            "model": {
                "uri": "s3://inference-models/models/smollm2.gguf",
                "format": "gguf",
                "servedName": "smollm2",
            },
        },
    }


def _state(kube: KubeCluster, namespace: str, servers: str) -> State:
    claims = _items(kube, "pvc", namespace)
    model_serve = kube.get_json("modelserve", "survivor", "-n", servers)
    return State(
        secrets=_secret_data(kube, namespace),
        claims={claim["metadata"]["name"]: claim["metadata"]["uid"] for claim in claims},
        volumes={claim["metadata"]["name"]: claim["spec"]["volumeName"] for claim in claims},
        model_serve=model_serve["metadata"]["uid"],
    )


@pytest.fixture(scope="module")
def release(
    cluster_helm: Helm, crds: KubeCluster, static_storage: Callable[[str, int], Any]
) -> Iterator[Release]:
    name = f"modelserve-up-{uuid.uuid4().hex[:6]}"
    servers = f"{name}-servers"
    storage = static_storage(f"{name}-test", 2)
    values = cluster_helm.values_file(_values(name, storage.storage_class, servers), name)
    cluster_helm(
        "install", name, str(PREVIOUS), "-n", name, "--create-namespace", "-f", str(values), *WAIT
    )
    crds.kubectl("apply", "-n", servers, stdin=json.dumps(_model_serve("survivor")))
    try:
        yield Release(name, servers, values, _state(crds, name, servers))
    finally:
        cluster_helm("uninstall", name, "-n", name, "--ignore-not-found", "--wait")
        crds.kubectl("delete", "modelserve", "survivor", "-n", servers, "--ignore-not-found")
        for namespace in (name, servers):
            crds.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false")
        storage.delete()


def _history(helm: Helm, release: Release) -> list[dict[str, Any]]:
    out = helm("history", release.name, "-n", release.name, "-o", "json")
    return list(json.loads(out))


def _objects_of(manifest: str) -> set[str]:
    """Kind/namespace/name of every object in a release's manifest."""
    return {
        f"{doc['kind']}/{doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
        for doc in yaml.safe_load_all(manifest)
        if doc
    }


def _kinds(kube: KubeCluster, namespaced: bool) -> str:
    out = kube.kubectl(
        "api-resources", "--verbs=list", f"--namespaced={str(namespaced).lower()}", "-o", "name"
    )
    return ",".join(sorted(line for line in out.split() if line))


def _owned_by_the_release(kube: KubeCluster, release: Release) -> set[str]:
    """Every object in the cluster that helm marked as the release's (its annotation):
    in the release's namespace, the server namespace, and cluster-wide."""
    found: list[dict[str, Any]] = []
    for namespace in (release.name, release.servers):
        out = kube.kubectl("get", _kinds(kube, True), "-n", namespace, "-o", "json")
        found += json.loads(out)["items"]
    found += json.loads(kube.kubectl("get", _kinds(kube, False), "-o", "json"))["items"]
    return {
        f"{item['kind']}/{item['metadata'].get('namespace', '')}/{item['metadata']['name']}"
        for item in found
        if item["kind"] not in NOT_THE_CHART_S
        # Not what controllers made of them (ReplicaSets carry their Deployment's notes).
        and not item["metadata"].get("ownerReferences")
        and (item["metadata"].get("annotations") or {}).get("meta.helm.sh/release-name")
        == release.name
    }


def _assert_state_kept(kube: KubeCluster, release: Release) -> None:
    now = _state(kube, release.name, release.servers)
    # Generated once at install, kept: the signing key, passwords, the webhook's
    # certificates. A release may add a Secret; none of 0.1.0's may change or go.
    for name, data in release.state.secrets.items():
        assert now.secrets.get(name) == data, name
    assert now.claims == release.state.claims
    assert now.volumes == release.state.volumes
    for claim in _items(kube, "pvc", release.name):
        assert claim["status"]["phase"] == "Bound", claim["metadata"]["name"]
    assert now.model_serve == release.state.model_serve
    crd = kube.get_json("crd", "modelserves.llm.modelserve.io")
    assert any(
        condition["type"] == "Established" and condition["status"] == "True"
        for condition in crd["status"]["conditions"]
    )


def _gateway_available(kube: KubeCluster, release: Release, replicas: int) -> bool:
    status = kube.get_json("deployment", f"{release.name}-gateway", "-n", release.name)["status"]
    return bool(status.get("availableReplicas") == replicas == status.get("replicas"))


def test_the_previous_release_is_installed_with_state(
    release: Release, cluster_helm: Helm, crds: KubeCluster
) -> None:
    (first,) = _history(cluster_helm, release)
    assert (first["chart"], first["status"]) == ("modelserve-0.1.0", "deployed")
    assert CURRENT_VERSION != "0.1.0"
    assert sorted(release.state.claims) == [
        f"data-{release.name}-{store}-0" for store in ("minio", "postgresql")
    ]
    assert f"{release.name}-jwt-key" in release.state.secrets
    assert not _items(crds, "poddisruptionbudgets", release.name)
    assert not _items(crds, "horizontalpodautoscalers", release.name)


def test_upgrade_to_this_chart_keeps_state_and_adds_the_production_objects(
    release: Release, cluster_helm: Helm, crds: KubeCluster
) -> None:
    cluster_helm(
        "upgrade", release.name, str(CHART), "-n", release.name, "-f", str(release.values), *WAIT
    )

    history = _history(cluster_helm, release)
    assert [(item["chart"], item["status"]) for item in history] == [
        ("modelserve-0.1.0", "superseded"),
        (f"modelserve-{CURRENT_VERSION}", "deployed"),
    ]
    _assert_state_kept(crds, release)
    # The new objects: a budget per service, the gateway's autoscaler.
    budgets = {item["metadata"]["name"] for item in _items(crds, "pdb", release.name)}
    assert budgets == {f"{release.name}-{service}" for service in SERVICES}
    (hpa,) = _items(crds, "hpa", release.name)
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{release.name}-gateway"
    # 0.1.0 set the gateway's replicas; this chart leaves them to the autoscaler, which
    # brings the Deployment (reset to one pod by the upgrade) back to its minReplicas.
    wait_for(
        lambda: _gateway_available(crds, release, hpa["spec"]["minReplicas"]),
        timeout=120,
        what="the autoscaler to hold the gateway at its minReplicas",
    )
    # ... after the upgrade had dropped it to one pod (what docs/operations.md warns of).
    about_hpa = f"involvedObject.uid={hpa['metadata']['uid']}"
    wait_for(
        lambda: any(
            event["reason"] == "SuccessfulRescale" and "below Spec.MinReplicas" in event["message"]
            for event in _items(crds, "events", release.name, "--field-selector", about_hpa)
        ),
        timeout=60,
        what="the autoscaler's rescale from one pod",
    )
    # The disruption controller counts each budget against the pods it selects: one pod of
    # each service may go at a time, and no more.
    wait_for(
        lambda: all(
            budget.get("status", {}).get("disruptionsAllowed") == 1
            and budget["status"].get("expectedPods") == budget["status"].get("currentHealthy")
            for budget in _items(crds, "pdb", release.name)
        ),
        timeout=60,
        what="every budget to allow one disruption",
    )
    # Nothing of 0.1.0's is left that this chart no longer makes, and every pod runs this
    # chart's image.
    manifest = cluster_helm("get", "manifest", release.name, "-n", release.name)
    assert _owned_by_the_release(crds, release) == _objects_of(manifest)
    wait_for(
        lambda: all(
            pod["status"]["phase"] == "Running"
            and pod["spec"]["containers"][0]["image"].endswith(f":{CURRENT_VERSION}")
            for pod in _items(crds, "pods", release.name)
            if pod["metadata"]["labels"].get("app.kubernetes.io/component") in SERVICES
        ),
        timeout=120,
        what="every service's pods to be this chart's",
    )


def test_rollback_to_the_previous_release_restores_it(
    release: Release, cluster_helm: Helm, crds: KubeCluster
) -> None:
    cluster_helm("rollback", release.name, "1", "-n", release.name, *WAIT)

    history = _history(cluster_helm, release)
    assert (history[-1]["chart"], history[-1]["status"]) == ("modelserve-0.1.0", "deployed")
    assert len(history) == 3
    _assert_state_kept(crds, release)
    assert not _items(crds, "pdb", release.name)
    assert not _items(crds, "hpa", release.name)
    deployment = crds.get_json("deployment", f"{release.name}-gateway", "-n", release.name)
    assert deployment["spec"]["replicas"] == 2
    wait_for(
        lambda: _gateway_available(crds, release, 2),
        timeout=120,
        what="0.1.0's two gateway replicas",
    )
    manifest = cluster_helm("get", "manifest", release.name, "-n", release.name)
    assert _owned_by_the_release(crds, release) == _objects_of(manifest)
