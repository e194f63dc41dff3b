"""Fixtures for the operator: the ModelServe CRD (and Traefik's) installed in the test cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import (
    RunningOperator,
    install_crds,
    operator_kubeconfig,
    start_operator,
)


@pytest.fixture(scope="session")
def crds(kube: KubeCluster) -> KubeCluster:
    """The cluster, with every CRD of crds/ and Traefik's stand-ins established."""
    install_crds(kube)
    return kube


@pytest.fixture(scope="session")
def operator(crds: KubeCluster, testbed_dir: Path) -> Iterator[RunningOperator]:
    """`modelserve-operator` running against the test cluster, as a process of its own,
    with the credentials of its service account: every test also checks its RBAC."""
    running = start_operator(
        operator_kubeconfig(crds),
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
