"""helm for the chart's tests: one without a cluster (render, lint), one with the test bed's."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.testbed.helm import Helm
from modelserve.testbed.kube import KubeCluster


@pytest.fixture(scope="session")
def offline_helm(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm, tmp_path_factory.mktemp("helm-offline"))


@pytest.fixture(scope="session")
def cluster_helm(helm: Path, crds: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm against the test bed's cluster, where the CRDs (ours, Traefik's) are established."""
    return Helm(helm, tmp_path_factory.mktemp("helm-cluster"), crds.kubeconfig)
