"""The operator needs no cluster-wide access to Secrets: here it runs with the ClusterRole
of operator/deploy/rbac.yaml and the Role of that file bound in one namespace only, and
serves, renews URLs, reads an API key and prunes there without a refused call.

No `operator` fixture in this module: its own operator, confined to the test's namespace,
is the only one reconciling."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.common.modelserve import API_KEY_HOSTS_ANNOTATION, API_KEY_LABEL
from modelserve.testbed.cache import repo_root
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import (
    OPERATOR_NAMESPACE,
    RunningOperator,
    operator_kubeconfig,
    start_operator,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_operator import apply, get, manifest, wait_phase

pytestmark = [pytest.mark.kube, pytest.mark.minio]


def _scoped_rbac(account: str, namespace: str) -> list[dict[str, Any]]:
    """The deploy manifest's ClusterRole bound cluster-wide, its Role in `namespace` only
    (and its Role for the gateways' Leases, in the gateway's namespace)."""
    documents = [
        doc
        for doc in yaml.safe_load_all((repo_root() / "operator/deploy/rbac.yaml").read_text())
        if doc
    ]
    (cluster_role,) = [d for d in documents if d["kind"] == "ClusterRole"]
    role_rules = next(d for d in documents if d["kind"] == "Role")["rules"]
    (leases,) = [
        d for d in documents if d["kind"] == "Role" and d["metadata"]["name"].endswith("-load")
    ]
    subject = {"kind": "ServiceAccount", "name": account, "namespace": OPERATOR_NAMESPACE}
    assert all("secrets" not in rule["resources"] for rule in cluster_role["rules"])
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": account, "namespace": OPERATOR_NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": account},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": cluster_role["metadata"]["name"]},
         "subjects": [subject]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": account, "namespace": namespace}, "rules": role_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": account, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
         "subjects": [subject]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": f"{account}-leases", "namespace": OPERATOR_NAMESPACE},
         "rules": leases["rules"]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"{account}-leases", "namespace": OPERATOR_NAMESPACE},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": f"{account}-leases"},
         "subjects": [subject]},
    ]  # fmt: skip


@pytest.fixture
def scoped_operator(
    crds: KubeCluster,
    namespace: str,
    platform_store: MinioServer,
    testbed_dir: Path,
    smollm2_uri: str,
) -> Iterator[RunningOperator]:
    operator_kubeconfig(crds)  # the deploy manifest's ClusterRole, as the chart installs it
    account = f"scoped-{uuid.uuid4().hex[:6]}"
    crds.kubectl("apply", stdin=yaml.safe_dump_all(_scoped_rbac(account, namespace)))
    running = start_operator(
        crds.service_account_kubeconfig(OPERATOR_NAMESPACE, account),
        testbed_dir / "logs" / account,
        {
            "OPERATOR_NAMESPACES": namespace,
            "OPERATOR_MODEL_STORE_ENDPOINT": crds.expose_to_pods(platform_store.port),
            "OPERATOR_MODEL_STORE_ACCESS_KEY": platform_store.access_key,
            "OPERATOR_MODEL_STORE_SECRET_KEY": platform_store.secret_key,
            "OPERATOR_ROUTE_SERVICE": "modelserve-gateway@file",
            "OPERATOR_EXTERNAL_PROBE_INTERVAL": "1",
            "OPERATOR_DRAIN_SECONDS": "2",
            # Renewed every 2 s, so that the test sees a renewal.
            "OPERATOR_MODEL_URL_REFRESH_SECONDS": "2",
            "OPERATOR_MODEL_URL_EXPIRY_SECONDS": "120",
        },
    )
    yield running
    running.stop()


def _files(kube: KubeCluster, namespace: str, name: str) -> Any:
    secret = get(kube, namespace, "secret", f"{name}-model-store")
    return json.loads(base64.b64decode(secret["data"]["files"]))


def test_a_role_in_the_namespace_is_all_the_operator_needs_of_secrets(
    crds: KubeCluster, namespace: str, scoped_operator: RunningOperator
) -> None:
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml", spec__replicas=1))
    wait_phase(crds, namespace, name, "Ready", timeout=180)

    first = _files(crds, namespace, name)["files"][0]["url"]
    wait_for(
        lambda: _files(crds, namespace, name)["files"][0]["url"] != first,
        timeout=60,
        what="the URLs to be signed anew",
    )

    crds.kubectl(
        "create", "secret", "generic", "key", "-n", namespace, "--from-literal=api-key=k"
    )  # fmt: skip
    crds.kubectl("label", "secret", "key", "-n", namespace, f"{API_KEY_LABEL}=true")
    crds.kubectl(
        "annotate", "secret", "key", "-n", namespace, f"{API_KEY_HOSTS_ANNOTATION}=127.0.0.1:9"
    )  # fmt: skip
    external = {
        "runtime": "external",
        "external": {"url": "http://127.0.0.1:9/v1", "apiKeySecretRef": {"name": "key"}},
    }
    crds.kubectl(
        "patch", "-n", namespace, f"ms/{name}", "--type=merge", "-p",
        json.dumps({"spec": external}),
    )  # fmt: skip
    wait_for(
        lambda: not get(crds, namespace, "secrets,deployments", "-l",
                        f"llm.modelserve.io/modelserve={name}")["items"],
        timeout=60,
        what="the store Secret and the Deployment to be deleted",
    )  # fmt: skip
    status = wait_phase(crds, namespace, name, "Degraded")
    assert "unreachable" in status["message"]  # probed, with the key the Secret allows there

    refused = [
        line
        for line in scoped_operator.process.log_path.read_text().splitlines()
        if "forbidden" in line.lower()
    ]
    assert not refused, "\n".join(refused)
