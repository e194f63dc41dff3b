"""LeaderWorkerSet installed after a ModelServe over several nodes was refused for its
absence: the operator tries again at its next renewal of the model's URLs and serves it,
with no change to the ModelServe (docs/operations.md, "LeaderWorkerSetMissing"). Real
operator with its RBAC, real LWS controller, a test bed of its own with KWOK GPU nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.common.modelserve import GROUP, KIND, VERSION
from modelserve.testbed.kube import FakeNode, KubeCluster, start_cluster
from modelserve.testbed.lws import add_nodes, gpu_nodes, start_lws
from modelserve.testbed.objectstores import PLATFORM_BUCKET, MinioServer
from modelserve.testbed.platform import install_crds, operator_kubeconfig, start_operator
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import record_config_only

pytestmark = [pytest.mark.kube, pytest.mark.minio]

MODEL_URI = f"s3://{PLATFORM_BUCKET}/models/lws-installed-later/"
NAME = "big"
NAMESPACE = "later"


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[KubeCluster]:
    cluster = start_cluster(
        tmp_path / "kube", nodes=(FakeNode("cpu-0", cpu="8", memory="16Gi"),), run_pods=False
    )
    try:
        install_crds(cluster)
        add_nodes(cluster, gpu_nodes(2))
        yield cluster
    finally:
        cluster.stop()


def status_of(cluster: KubeCluster) -> dict[str, Any]:
    found: dict[str, Any] = cluster.get_json("ms", NAME, "-n", NAMESPACE).get("status") or {}
    return found


def test_a_refused_group_is_served_once_leaderworkerset_is_installed(
    bed: KubeCluster, platform_store: MinioServer, tmp_path: Path
) -> None:
    record_config_only(platform_store, MODEL_URI, "lws-installed-later")
    operator = start_operator(
        operator_kubeconfig(bed),
        tmp_path / "logs",
        {
            "OPERATOR_MODEL_STORE_ENDPOINT": bed.expose_to_pods(platform_store.port),
            "OPERATOR_MODEL_STORE_ACCESS_KEY": platform_store.access_key,
            "OPERATOR_MODEL_STORE_SECRET_KEY": platform_store.secret_key,
            "OPERATOR_ROUTE_SERVICE": "modelserve-gateway@file",
            # The renewal that tries a refused ModelServe again, every 2 s here.
            "OPERATOR_MODEL_URL_REFRESH_SECONDS": "2",
        },
    )
    try:
        bed.kubectl("create", "namespace", NAMESPACE)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": NAME},
            "spec": {
                "runtime": "vllm",
                "model": {"uri": MODEL_URI},
                "resources": {"gpus": 8, "nodes": 2},
            },
        }
        bed.kubectl("apply", "-n", NAMESPACE, stdin=yaml.safe_dump(body))
        refused = wait_for(
            lambda: (s := status_of(bed)).get("phase") == "Failed" and s,
            timeout=60,
            what="the ModelServe refused for want of LeaderWorkerSet",
        )
        ready = next(c for c in refused["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "LeaderWorkerSetMissing"

        lws = start_lws(tmp_path / "lws", bed)
        try:
            served = wait_for(
                lambda: (s := status_of(bed)).get("phase") == "Ready" and s,
                timeout=120,
                what="the ModelServe served once LeaderWorkerSet is there",
            )
            assert (served["readyReplicas"], served["message"]) == (1, "1/1 replicas ready")
            sets = bed.get_json("leaderworkersets.leaderworkerset.x-k8s.io", "-n", NAMESPACE)
            assert [item["metadata"]["name"] for item in sets["items"]] == [NAME]
        finally:
            lws.stop(bed)
    finally:
        operator.stop()
