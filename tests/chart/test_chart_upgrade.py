"""`helm upgrade` from the previous release's chart (0.1.0) to this one, and back.

0.1.0 comes from tests/chart/fixtures/modelserve-0.1.0.tgz (the chart as released; see the
README there), so that the test needs no git history. It is installed into the test bed's
cluster (KWOK nodes: pods run without containers) with the values a user would give, and
state is made that must survive: a ModelServe, the generated credentials, the volumes of
PostgreSQL and MinIO. Then `helm upgrade` to the chart in the tree with the same values
file (the gateway keeps its two pods throughout), a second `helm upgrade` that turns the
gateway's autoscaler on (the one-time dip the docs describe), and `helm rollback` to
0.1.0. The tests run in file order on one release.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.testbed.gobuild import binary
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


class ReplicaWatch:
    """spec.replicas of every version of the gateway's Deployment that the API server
    reports while the watch runs: a drop that the autoscaler undoes seconds later shows
    here, where a look before and after would miss it."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def seen(self) -> list[int]:
        return [int(line) for line in self.out.read_text().split()]


@contextmanager
def _watching_replicas(kube: KubeCluster, release: Release, folder: Path) -> Iterator[ReplicaWatch]:
    out = folder / "gateway-replicas.txt"
    argv = [
        str(binary("kubectl")),
        f"--kubeconfig={kube.kubeconfig}",
        "get",
        "deployment",
        f"{release.name}-gateway",
        "-n",
        release.name,
        "--watch",
        "--request-timeout=15m",
        "-o",
        'jsonpath={.spec.replicas}{"\\n"}',
    ]
    with out.open("w") as sink, (folder / "gateway-replicas.err").open("w") as errors:
        watch = subprocess.Popen(argv, stdout=sink, stderr=errors)
    try:
        replicas = ReplicaWatch(out)
        # kubectl prints the object as it is before it watches: from then on, nothing is missed.
        wait_for(replicas.seen, timeout=30, what="the watch of the gateway's Deployment")
        yield replicas
    finally:
        watch.terminate()
        watch.wait(timeout=10)


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
    release: Release, cluster_helm: Helm, crds: KubeCluster, tmp_path: Path
) -> None:
    with _watching_replicas(crds, release, tmp_path) as watch:
        cluster_helm(
            "upgrade",
            release.name,
            str(CHART),
            "-n",
            release.name,
            "-f",
            str(release.values),
            *WAIT,
        )
        wait_for(
            lambda: _gateway_available(crds, release, 2),
            timeout=120,
            what="the gateway's two pods of this chart",
        )

    history = _history(cluster_helm, release)
    assert [(item["chart"], item["status"]) for item in history] == [
        ("modelserve-0.1.0", "superseded"),
        (f"modelserve-{CURRENT_VERSION}", "deployed"),
    ]
    _assert_state_kept(crds, release)
    # The autoscaler is opt-in: the Deployment keeps the replicas 0.1.0 set, and no version
    # of it asked for fewer while the pods were replaced.
    assert not _items(crds, "hpa", release.name)
    deployment = crds.get_json("deployment", f"{release.name}-gateway", "-n", release.name)
    assert deployment["spec"]["replicas"] == 2
    assert set(watch.seen()) == {2}
    # The new objects: a budget per service.
    budgets = {item["metadata"]["name"] for item in _items(crds, "pdb", release.name)}
    assert budgets == {f"{release.name}-{service}" for service in SERVICES}
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


def test_turning_the_autoscaler_on_drops_the_gateway_to_one_pod_until_its_first_sync(
    release: Release, cluster_helm: Helm, crds: KubeCluster, tmp_path: Path
) -> None:
    gateway = f"{release.name}-gateway"
    # minReplicas (2) equal to the running pods does not keep helm from removing the
    # replicas field: its patch comes from the previous release's manifest (which set them)
    # and the new one (which does not), whatever runs.
    with _watching_replicas(crds, release, tmp_path) as watch:
        cluster_helm(
            "upgrade",
            release.name,
            str(CHART),
            "-n",
            release.name,
            "-f",
            str(release.values),
            "--set",
            "gateway.autoscaling.enabled=true",
            *WAIT,
        )
        # Kubernetes sets the Deployment to one pod, then the autoscaler raises it again.
        wait_for(
            lambda: watch.seen()[-1] == 2 and 1 in watch.seen(),
            timeout=120,
            what="the autoscaler to raise the gateway back to its minReplicas",
        )
        wait_for(
            lambda: _gateway_available(crds, release, 2),
            timeout=120,
            what="two gateways again",
        )

    seen = watch.seen()
    assert seen[0] == 2
    assert set(seen) == {1, 2}
    # Down once, back once: 2 ... 1 ... 2.
    assert seen.index(1) > 0
    assert 2 in seen[seen.index(1) :]
    (hpa,) = _items(crds, "hpa", release.name)
    assert hpa["spec"]["scaleTargetRef"]["name"] == gateway
    assert hpa["spec"]["minReplicas"] == 2
    about_hpa = f"involvedObject.uid={hpa['metadata']['uid']}"
    wait_for(
        lambda: any(
            event["reason"] == "SuccessfulRescale" and "below Spec.MinReplicas" in event["message"]
            for event in _items(crds, "events", release.name, "--field-selector", about_hpa)
        ),
        timeout=60,
        what="the autoscaler's rescale from one pod",
    )
    deployment = crds.get_json("deployment", gateway, "-n", release.name)
    assert deployment["spec"]["replicas"] == 2
    manifest = cluster_helm("get", "manifest", release.name, "-n", release.name)
    assert _owned_by_the_release(crds, release) == _objects_of(manifest)
    _assert_state_kept(crds, release)


def test_later_upgrades_leave_the_autoscaler_s_count_alone(
    release: Release, cluster_helm: Helm, crds: KubeCluster, tmp_path: Path
) -> None:
    gateway = f"{release.name}-gateway"
    # Three pods stand for a count the autoscaler chose: without metrics (the test bed has
    # no metrics-server) it keeps any count between minReplicas and maxReplicas.
    crds.kubectl("scale", "deployment", gateway, "-n", release.name, "--replicas=3")
    wait_for(lambda: _gateway_available(crds, release, 3), timeout=120, what="three gateways")
    with _watching_replicas(crds, release, tmp_path) as watch:
        # A changed gateway setting: helm patches the Deployment and rolls its pods.
        cluster_helm(
            "upgrade",
            release.name,
            str(CHART),
            "-n",
            release.name,
            "-f",
            str(release.values),
            "--set",
            "gateway.autoscaling.enabled=true",
            "--set",
            "gateway.logLevel=debug",
            *WAIT,
        )
        wait_for(
            lambda: _gateway_available(crds, release, 3),
            timeout=120,
            what="three gateways of the new revision",
        )
    assert set(watch.seen()) == {3}
    deployment = crds.get_json("deployment", gateway, "-n", release.name)
    assert deployment["spec"]["replicas"] == 3
    assert _history(cluster_helm, release)[-1]["status"] == "deployed"


def test_rollback_to_the_previous_release_restores_it(
    release: Release, cluster_helm: Helm, crds: KubeCluster
) -> None:
    # From the autoscaled revision: the Deployment gets 0.1.0's replicas back at once.
    cluster_helm("rollback", release.name, "1", "-n", release.name, *WAIT)

    history = _history(cluster_helm, release)
    assert (history[-1]["chart"], history[-1]["status"]) == ("modelserve-0.1.0", "deployed")
    assert len(history) == 5
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
