"""k3d/cluster.yaml, the cluster of `make cluster`: parsed as k3d would read it (k3d
itself needs Docker, which this machine lacks)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelserve.contract.settings import ContractSettings
from modelserve.testbed.kube import build_admission_configuration


@pytest.fixture(scope="module")
def config(root: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((root / "k3d" / "cluster.yaml").read_text())
    return loaded


def test_it_is_a_k3d_v5_simple_config_for_the_seeds_cluster(config: dict[str, Any]) -> None:
    assert config["apiVersion"] == "k3d.io/v1alpha5"
    assert config["kind"] == "Simple"
    assert config["metadata"]["name"] == "inference-cluster"
    assert config["servers"] >= 1


def test_the_load_balancer_publishes_traefik_on_8080(config: dict[str, Any]) -> None:
    ports = {(p["port"], tuple(p["nodeFilters"])) for p in config["ports"]}
    assert ("8080:80", ("loadbalancer",)) in ports


def test_traefik_stays_enabled(config: dict[str, Any]) -> None:
    k3s = config.get("options", {}).get("k3s", {})
    args = [item["arg"] for item in k3s.get("extraArgs", [])]
    assert not [arg for arg in args if "disable" in arg and "traefik" in arg]


def test_the_k3s_image_is_pinned(config: dict[str, Any]) -> None:
    assert re.fullmatch(r"rancher/k3s:v1\.\d+\.\d+-k3s\d+", config["image"])


def test_the_makefile_and_the_config_name_the_same_cluster(
    root: Path, config: dict[str, Any]
) -> None:
    makefile = (root / "Makefile").read_text()
    assert f"CLUSTER ?= {config['metadata']['name']}" in makefile
    assert "K3D_CONFIG ?= k3d/cluster.yaml" in makefile
    # k3d names the kubeconfig context k3d-<cluster>.
    assert "KUBE_CONTEXT ?= k3d-$(CLUSTER)" in makefile


def test_the_readme_explains_gpu_nodes(root: Path) -> None:
    text = (root / "k3d" / "README.md").read_text()
    for needed in ("nvidia.com/gpu", "device plugin", "nvidia.com/gpu.product", "--gpus"):
        assert needed in text, needed


def test_the_api_server_presents_the_webhook_client_certificate(
    config: dict[str, Any], root: Path, tmp_path: Path
) -> None:
    """The contract's webhook accepts only the API server's client certificate: the k3d
    server gets one (k3d/webhook-client.sh) and the AdmissionConfiguration that uses it."""
    inside = "/etc/modelserve/webhook-client"
    (volume,) = config["volumes"]
    assert volume["volume"] == "${MODELSERVE_WEBHOOK_CLIENT_DIR}:" + inside
    assert volume["nodeFilters"] == ["server:*"]
    args = {item["arg"]: item["nodeFilters"] for item in config["options"]["k3s"]["extraArgs"]}
    flag = f"--kube-apiserver-arg=admission-control-config-file={inside}/admission.yaml"
    assert args[flag] == ["server:*"]

    folder = tmp_path / "webhook-client"
    subprocess.run(["sh", str(root / "k3d" / "webhook-client.sh"), str(folder)], check=True)
    admission = yaml.safe_load((folder / "admission.yaml").read_text())
    # The format the test bed's own API server runs with.
    assert admission == build_admission_configuration(Path(f"{inside}/kubeconfig"))
    (user,) = yaml.safe_load((folder / "kubeconfig").read_text())["users"]
    assert user == {
        "name": "*",
        "user": {
            "client-certificate": f"{inside}/client.crt",
            "client-key": f"{inside}/client.key",
        },
    }
    authority = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    client = x509.load_pem_x509_certificate((folder / "client.crt").read_bytes())
    client.verify_directly_issued_by(authority)
    (name,) = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert name.value == ContractSettings.model_fields["webhook_client_names"].default
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
    # Made once: a second run keeps the CA the chart was given.
    before = (folder / "ca.crt").read_bytes()
    subprocess.run(["sh", str(root / "k3d" / "webhook-client.sh"), str(folder)], check=True)
    assert (folder / "ca.crt").read_bytes() == before
