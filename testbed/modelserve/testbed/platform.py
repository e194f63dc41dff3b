"""ModelServe's own processes on the test bed: the operator and the services."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import yaml

from modelserve.common.modelserve import GROUP, KIND, OWNER_LABEL, VERSION
from modelserve.testbed.cache import repo_root
from modelserve.testbed.kube import WEBHOOK_CLIENT_NAME, KubeCluster
from modelserve.testbed.pki import CertificateAuthority
from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import ManagedProcess, free_port
from modelserve.testbed.traefik import traefik_crds

OPERATOR_NAMESPACE = "modelserve"
CONTRACT_NAMESPACE = "modelserve"
GATEWAY_NAMESPACE = "modelserve"


@dataclass
class RunningOperator:
    """The operator process, which tests may crash and start again."""

    process: ManagedProcess
    health_port: int
    metrics_port: int

    def start(self) -> None:
        self.process.start()
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        self.process.wait_until(lambda: urlopen(url, timeout=2).status == 200, 60, "healthy")

    def crash(self) -> None:
        """SIGKILL: no cleanup, as when the node under the operator dies."""
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()


def install_crds(cluster: KubeCluster) -> None:
    """The ModelServe CRD from crds/ and Traefik's own CRDs (from its Go module), ready to
    use."""
    # Server-side, as Traefik's documentation applies them: a client-side apply would keep
    # a second copy of each (up to 95 kB) in its last-applied annotation.
    files = ["-f", str(repo_root() / "crds"), "-f", str(traefik_crds())]
    cluster.kubectl("apply", "--server-side", *files)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", *files)


def build_external_server(
    name: str, namespace: str, *, owner: str, served_name: str, url: str
) -> dict[str, Any]:
    """An `external` ModelServe for an OpenAI server at `url` (ending in /v1, as the
    operator and gateway expect), serving `served_name`, owned by `owner`."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": {OWNER_LABEL: owner}},
        "spec": {
            "runtime": "external",
            "model": {"servedName": served_name},
            "external": {"url": url},
        },
    }


def serve_external(cluster: KubeCluster, server: dict[str, Any], timeout: float = 60.0) -> None:
    """Apply `server` (see `build_external_server`) as the cluster's admin and wait until
    the operator's probe finds it Ready."""
    cluster.kubectl("apply", stdin=json.dumps(server))
    name, namespace = server["metadata"]["name"], server["metadata"]["namespace"]

    def ready() -> bool:
        found = cluster.get_json("ms", name, "-n", namespace)
        return bool((found.get("status") or {}).get("phase") == "Ready")

    wait_for(ready, timeout=timeout, what=f"ModelServe {namespace}/{name} to become Ready")


def testbed_rbac(documents: list[dict[str, Any]], account: str) -> list[dict[str, Any]]:
    """A deploy RBAC manifest as the test bed applies it. Its Roles grant what a component
    needs in each namespace where ModelServes live (Secrets); here every test makes a
    namespace of its own and the operator and gateway watch them all, so those rules are
    granted in every namespace instead (a ClusterRole `<account>-testbed`). The namespaced
    grant itself is checked against the API server by tests/chart."""
    kept = [doc for doc in documents if doc["kind"] not in ("Role", "RoleBinding")]
    rules: list[Any] = []
    for doc in documents:
        if doc["kind"] == "Role":
            rules += [rule for rule in doc["rules"] if rule not in rules]
    if not rules:
        return kept
    name = f"{account}-testbed"
    namespace = next(d for d in documents if d["kind"] == "ServiceAccount")["metadata"]
    subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace["namespace"]}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
    return [
        *kept,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": role_ref,
            "subjects": [subject],
        },
    ]


def _account_kubeconfig(cluster: KubeCluster, namespace: str, rbac: Path, account: str) -> Path:
    """Credentials of a service account, with the RBAC manifest that binds it applied."""
    if not cluster.kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name"):
        cluster.kubectl("create", "namespace", namespace)
    documents = [doc for doc in yaml.safe_load_all(rbac.read_text()) if doc]
    cluster.kubectl("apply", stdin=yaml.safe_dump_all(testbed_rbac(documents, account)))
    return cluster.service_account_kubeconfig(namespace, account)


def operator_kubeconfig(cluster: KubeCluster) -> Path:
    """Credentials of the operator's service account, bound to operator/deploy/rbac.yaml."""
    rbac = repo_root() / "operator" / "deploy" / "rbac.yaml"
    return _account_kubeconfig(cluster, OPERATOR_NAMESPACE, rbac, "modelserve-operator")


def contract_kubeconfig(cluster: KubeCluster) -> Path:
    """Credentials of the contract service's account (services/contract/deploy/rbac.yaml)."""
    rbac = repo_root() / "services" / "contract" / "deploy" / "rbac.yaml"
    return _account_kubeconfig(cluster, CONTRACT_NAMESPACE, rbac, "modelserve-contract")


def gateway_kubeconfig(cluster: KubeCluster) -> Path:
    """Credentials of the gateway's account (services/gateway/deploy/rbac.yaml)."""
    rbac = repo_root() / "services" / "gateway" / "deploy" / "rbac.yaml"
    return _account_kubeconfig(cluster, GATEWAY_NAMESPACE, rbac, "modelserve-gateway")


def nodeagent_kubeconfig(cluster: KubeCluster) -> Path:
    """Credentials of the node agent's account (services/nodeagent/deploy/rbac.yaml)."""
    rbac = repo_root() / "services" / "nodeagent" / "deploy" / "rbac.yaml"
    return _account_kubeconfig(cluster, GATEWAY_NAMESPACE, rbac, "modelserve-nodeagent")


def start_operator(
    kubeconfig: Path, log_folder: Path, settings: Mapping[str, str] | None = None
) -> RunningOperator:
    """Run `modelserve-operator` against the cluster of `kubeconfig`.

    `settings` are OPERATOR_* environment variables (see modelserve.operator.settings).
    """
    health, metrics = free_port(), free_port()
    process = ManagedProcess(
        "modelserve-operator",
        [Path(sys.executable).parent / "modelserve-operator"],
        log_folder / "operator.log",
        env={
            "KUBECONFIG": str(kubeconfig),
            "OPERATOR_HEALTH_PORT": str(health),
            "OPERATOR_METRICS_PORT": str(metrics),
            **(settings or {}),
        },
    )
    operator = RunningOperator(process, health, metrics)
    try:
        operator.start()
    except BaseException:
        operator.stop()
        raise
    return operator


@dataclass
class RunningService:
    """A ModelServe service (`modelserve-<name>`) as a process, and where it answers."""

    name: str
    process: ManagedProcess
    url: str

    def start(self) -> None:
        self.process.start()
        health = f"{self.url}/health"
        self.process.wait_until(lambda: urlopen(health, timeout=2).status == 200, 60, "healthy")

    def stop(self) -> None:
        self.process.stop()


def start_service(
    name: str, log_folder: Path, settings: Mapping[str, str], port: int | None = None
) -> RunningService:
    """Run `modelserve-<name>` with `settings` (its environment variables) on a free port
    (or `port`), and wait until it answers /health."""
    port = port or free_port()
    process = ManagedProcess(
        f"modelserve-{name}",
        [Path(sys.executable).parent / f"modelserve-{name}"],
        log_folder / f"{name}-{port}.log",
        env={f"{name.upper()}_PORT": str(port), **settings},
    )
    service = RunningService(name, process, f"http://127.0.0.1:{port}")
    try:
        service.start()
    except BaseException:
        service.stop()
        raise
    return service


@dataclass
class RunningContract:
    """The contract service, its webhook registered with the cluster."""

    service: RunningService
    webhook_url: str
    webhook_configuration: str

    def stop(self, cluster: KubeCluster) -> None:
        # The webhooks fail closed: left registered, they would refuse every ModelServe.
        try:
            for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
                cluster.kubectl("delete", kind, self.webhook_configuration, "--ignore-not-found")
        finally:
            self.service.stop()


def start_contract(
    cluster: KubeCluster,
    folder: Path,
    database_url: str,
    settings: Mapping[str, str],
    *,
    port: int | None = None,
    webhook_port: int | None = None,
    namespace_selector: dict[str, object] | None = None,
    name: str = "modelserve-contract",
) -> RunningContract:
    """`modelserve-contract` with its admission webhooks over TLS (a certificate for
    127.0.0.1 from a CA of its own), for the API server's client certificate only,
    registered as the Validating- and MutatingWebhookConfiguration `name`.
    The service lists and watches ModelServes as its own service account."""
    from modelserve.contract.admission import (
        build_mutating_webhook_configuration,
        build_webhook_configuration,
    )

    assert cluster.webhook_client_ca is not None, "the cluster presents no webhook client"

    authority = CertificateAuthority(folder / f"{name}-pki")
    serving = authority.issue("webhook", "modelserve-contract", hosts=("127.0.0.1",), server=True)
    webhook_port = webhook_port or free_port()
    service = start_service(
        "contract",
        folder / "logs",
        {
            "CONTRACT_DATABASE_URL": database_url,
            "CONTRACT_WEBHOOK_PORT": str(webhook_port),
            "CONTRACT_TLS_CERT_FILE": str(serving.cert),
            "CONTRACT_TLS_KEY_FILE": str(serving.key),
            "CONTRACT_WEBHOOK_CLIENT_CA_FILE": str(cluster.webhook_client_ca),
            "CONTRACT_WEBHOOK_CLIENT_NAMES": WEBHOOK_CLIENT_NAME,
            "KUBECONFIG": str(contract_kubeconfig(cluster)),
            **settings,
        },
        port=port,
    )
    url = f"https://127.0.0.1:{webhook_port}"
    configurations = [
        build(
            ca_bundle=authority.pair.cert.read_bytes(),
            url=url,
            namespace_selector=namespace_selector,
            name=name,
        )
        for build in (build_mutating_webhook_configuration, build_webhook_configuration)
    ]
    try:
        for configuration in configurations:
            cluster.kubectl("apply", stdin=json.dumps(configuration))
    except BaseException:
        service.stop()
        raise
    return RunningContract(service, url, name)
