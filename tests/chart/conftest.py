"""helm for the chart's tests: one without a cluster (render, lint), one with the test bed's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.testbed.helm import Helm
from modelserve.testbed.kube import KubeCluster


@pytest.fixture(scope="session")
def offline_helm(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm, tmp_path_factory.mktemp("helm-offline"))


@pytest.fixture(scope="session")
def cluster_helm(helm: Path, crds: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm against the test bed's cluster, where the CRDs (ours, Traefik's) are established."""
    return Helm(helm, tmp_path_factory.mktemp("helm-cluster"), crds.kubeconfig)


@dataclass(frozen=True)
class StaticStorage:
    """A storage class with no provisioner and static volumes of it: the test bed has no
    volume provisioner, so releases that install PostgreSQL and MinIO point them here."""

    kube: KubeCluster
    storage_class: str
    volumes: int

    def create(self) -> StaticStorage:
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": self.storage_class},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "Immediate",
                "reclaimPolicy": "Retain",
            }
        ]
        for name in self.volume_names:
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": name},
                    "spec": {
                        "storageClassName": self.storage_class,
                        "capacity": {"storage": "1Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": f"/tmp/{name}"},
                    },
                }
            )
        self.kube.kubectl("apply", stdin=yaml.safe_dump_all(objects))
        return self

    @property
    def volume_names(self) -> list[str]:
        return [f"{self.storage_class}-{index}" for index in range(self.volumes)]

    def delete(self) -> None:
        self.kube.kubectl("delete", "pv", *self.volume_names, "--ignore-not-found", "--wait=false")
        self.kube.kubectl("delete", "storageclass", self.storage_class, "--ignore-not-found")


@pytest.fixture(scope="session")
def static_storage(crds: KubeCluster) -> Callable[[str, int], StaticStorage]:
    """Makes a StaticStorage on the test bed's cluster: (storage class, volumes)."""
    return lambda storage_class, volumes: StaticStorage(crds, storage_class, volumes).create()
