"""The operator killed (SIGKILL) in the middle of reconciling 100 ModelServes, then a new
operator process: every ModelServe ends with exactly the children it wants (one
Deployment, one Service, one IngressRoute, one store Secret), owned by it, none twice,
none orphaned, none missing, and a Ready status of its current generation.

A control plane of this module's own, with KWOK playing the kubelets of every pod (as
bench/operator_scale.py runs it): 100 llama.cpp servers would not fit on the machine, and
what is under test is the operator's bookkeeping, not the servers. tests/operator's
`test_operator_crash_midway_leaves_no_duplicates_or_orphans` does the same with six
ModelServes on the shared cluster; this one is at a hundred and measures the recovery.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from modelserve.common.modelserve import ModelServe
from modelserve.operator.builders import controller_uid
from modelserve.operator.children import wanted_children
from modelserve.operator.settings import OperatorSettings
from modelserve.testbed.kube import FakeNode, KubeCluster, start_cluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import (
    RunningOperator,
    install_crds,
    operator_kubeconfig,
    start_operator,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import tag_as_recorded

pytestmark = [pytest.mark.kube, pytest.mark.minio]

COUNT = 100
NAMESPACE = "faults-operator"
MODEL_KEY = "tiny.gguf"
GROUP, VERSION, PLURAL = "llm.modelserve.io", "v1alpha1", "modelserves"
# Bounds on the waits, generous for a shared 2-core machine; the figure is printed.
CREATE_TIMEOUT = 120.0
RECOVERY_TIMEOUT = 600.0
# The kinds of child the operator makes for a llama.cpp ModelServe without a cache.
CHILD_KINDS = ("deployments", "services", "secrets", "ingressroutes")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A control plane of its own (pods simulated by KWOK), with the ModelServe and
    Traefik CRDs, and one CPU node with room for the 100 pods."""
    node = FakeNode("cpu-0", cpu="64", memory="256Gi")
    cluster = start_cluster(tmp_path_factory.mktemp("faults-kube"), nodes=(node,), run_pods=False)
    try:
        install_crds(cluster)
        cluster.kubectl("create", "namespace", NAMESPACE)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def api(cluster: KubeCluster) -> Iterator[k8s.ApiClient]:
    client = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="module")
def settings(platform_store: MinioServer, platform_bucket_module: str) -> dict[str, str]:
    """The operator's settings: the model in the platform store as a download leaves it
    (tagged with its digest), routes to the gateway of Traefik's file provider."""
    digest = platform_store.put(platform_bucket_module, MODEL_KEY, b"GGUF fault-test model")
    tag_as_recorded(platform_store.client(), platform_bucket_module, MODEL_KEY, digest, "faults")
    return {
        "OPERATOR_MODEL_STORE_ENDPOINT": platform_store.endpoint,
        "OPERATOR_MODEL_STORE_ACCESS_KEY": platform_store.access_key,
        "OPERATOR_MODEL_STORE_SECRET_KEY": platform_store.secret_key,
        "OPERATOR_ROUTE_SERVICE": "modelserve-gateway@file",
    }


@pytest.fixture(scope="module")
def platform_bucket_module(platform_store: MinioServer) -> Iterator[str]:
    """A bucket of this module's own in the session's platform store."""
    client = platform_store.client()
    name = f"faults-operator-{int(time.time())}"
    client.make_bucket(name)
    yield name
    for item in client.list_objects(name, recursive=True):
        client.remove_object(name, item.object_name)
    client.remove_bucket(name)


@pytest.fixture(scope="module")
def operator(
    cluster: KubeCluster, settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    """The operator as its own service account (operator/deploy/rbac.yaml)."""
    running = start_operator(
        operator_kubeconfig(cluster), tmp_path_factory.mktemp("faults-operator-logs"), settings
    )
    yield running
    running.stop()


def build_modelserve(index: int, bucket: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelServe",
        "metadata": {"name": f"ms-{index:03d}", "namespace": NAMESPACE},
        "spec": {
            "runtime": "llamacpp",
            "model": {"uri": f"s3://{bucket}/{MODEL_KEY}", "format": "gguf"},
            "replicas": 1,
            "resources": {"cpu": "10m", "memory": "16Mi"},
        },
    }


def modelserves(api: k8s.ApiClient) -> list[dict[str, Any]]:
    found = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL
    )
    items: list[dict[str, Any]] = found["items"]
    return items


def children(cluster: KubeCluster) -> list[dict[str, Any]]:
    """Every object of the kinds the operator makes, in one list."""
    items: list[dict[str, Any]] = cluster.get_json("-n", NAMESPACE, ",".join(CHILD_KINDS))["items"]
    return items


def ready(ms: dict[str, Any]) -> bool:
    status = ms.get("status") or {}
    return bool(
        status.get("phase") == "Ready"
        and status.get("observedGeneration") == ms["metadata"]["generation"]
    )


def story(operator: RunningOperator, name: str) -> str:
    """What the operator's log (both processes') says of ModelServe `name`: when a test
    fails, the only account of a race there is."""
    lines = operator.process.log_path.read_text(errors="replace").splitlines()
    told = [line for line in lines if name in line or "Traceback" in line]
    return "\n".join(told[-80:])


def test_a_killed_operator_leaves_each_of_100_modelserves_whole_and_once(
    cluster: KubeCluster,
    api: k8s.ApiClient,
    operator: RunningOperator,
    settings: dict[str, str],
    platform_bucket_module: str,
    figure: Callable[[str, float], None],
) -> None:
    bodies = [build_modelserve(index, platform_bucket_module) for index in range(COUNT)]
    cluster.kubectl("apply", stdin=yaml.safe_dump_all(bodies))
    apps = k8s.AppsV1Api(api)

    def first_deployment() -> int:
        return len(apps.list_namespaced_deployment(NAMESPACE).items)

    # SIGKILL as soon as the operator has begun making children: the rest is half done.
    wait_for(first_deployment, timeout=CREATE_TIMEOUT, what="the operator's first Deployment")
    operator.crash()
    at_kill = first_deployment()
    print(f"\nkilled with {at_kill} of {COUNT} Deployments made", flush=True)

    began = time.monotonic()
    operator.start()

    def all_ready() -> list[dict[str, Any]] | None:
        found = modelserves(api)
        return found if len(found) == COUNT and all(ready(ms) for ms in found) else None

    found = wait_for(
        all_ready, timeout=RECOVERY_TIMEOUT, what=f"all {COUNT} ModelServes Ready", interval=0.5
    )
    figure(
        f"operator killed mid-way through {COUNT} ModelServes: restart to all Ready",
        time.monotonic() - began,
    )

    # Exactly the children each one wants, each owned by it; nothing owned by no one.
    operator_settings = OperatorSettings.model_validate(
        {key.removeprefix("OPERATOR_").lower(): value for key, value in settings.items()}
    )
    by_uid = {ms["metadata"]["uid"]: ms for ms in found}
    owned: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for child in children(cluster):
        kind, name = child["kind"], child["metadata"]["name"]
        # The namespace holds nothing of these kinds but the operator's children.
        uid = controller_uid(child)
        assert uid is not None and uid in by_uid, f"{kind} {name} is an orphan ({uid})"
        owned[uid].append((kind, name))
    for uid, ms in by_uid.items():
        wanted = wanted_children(ModelServe.from_body(ms), operator_settings)
        made = owned[uid]
        name = ms["metadata"]["name"]
        assert Counter(made) == Counter(wanted), (name, made, wanted, story(operator, name))
        status = ms["status"]
        assert (status["replicas"], status["readyReplicas"]) == (1, 1), status
        assert status["endpoint"] and status["route"], status
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions.get("Ready") == "True", status["conditions"]

    # One ReplicaSet and one Pod per Deployment: no Deployment was made twice over.
    replica_sets = apps.list_namespaced_replica_set(NAMESPACE).items
    pods = k8s.CoreV1Api(api).list_namespaced_pod(NAMESPACE).items
    assert len(replica_sets) == COUNT
    assert len(pods) == COUNT
