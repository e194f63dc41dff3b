"""Fixtures for the operator: the ModelServe CRD (and Traefik's) installed in the test cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningOperator, start_operator

ROOT = Path(__file__).resolve().parents[2]
TRAEFIK_CRDS = ROOT / "testbed" / "modelserve" / "testbed" / "traefik_crds.yaml"


@pytest.fixture(scope="session")
def crds(kube: KubeCluster) -> KubeCluster:
    """The cluster, with every CRD of crds/ and Traefik's stand-ins established."""
    kube.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"), "-f", str(TRAEFIK_CRDS))
    kube.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/modelserves.llm.modelserve.io",
        "crd/ingressroutes.traefik.io",
        "crd/middlewares.traefik.io",
    )
    return kube


@pytest.fixture(scope="session")
def operator(crds: KubeCluster, testbed_dir: Path) -> Iterator[RunningOperator]:
    """`modelserve-operator` running against the test cluster, as a process of its own."""
    running = start_operator(
        crds.kubeconfig,
        testbed_dir / "logs",
        {
            "OPERATOR_EXTERNAL_PROBE_INTERVAL": "1",
            "OPERATOR_EXTERNAL_PROBE_TIMEOUT": "2",
            "OPERATOR_MODEL_STORE_ENDPOINT": "modelserve-minio.modelserve.svc:9000",
            "OPERATOR_MODEL_STORE_ACCESS_KEY": "test-access-key",
            "OPERATOR_MODEL_STORE_SECRET_KEY": "test-secret-key",
        },
    )
    yield running
    running.stop()
