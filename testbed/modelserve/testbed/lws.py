"""LeaderWorkerSet on the test bed: the upstream controller manager of `sigs.k8s.io/lws`,
its CRD, RBAC and admission webhooks, running against the test bed's control plane.

The binary is built from the wrapper module testbed/go/lws (which pins the upstream module
at an exact version) into the cache, as the test bed's other Go programs are. The CRD, the
ClusterRoles and the webhook manifests come from the same module's config/ folder, fetched
with `go mod download` and checked against the wrapper's go.sum, and are kept in the cache
by version.

The webhooks run: LWS's pod webhook is what labels each pod with its group and worker
index and puts LWS_LEADER_ADDRESS, LWS_GROUP_SIZE and LWS_WORKER_INDEX in its
environment, so a test bed without it would not show what a real cluster does. They are
served on loopback with a certificate from a CA of the test bed's own, registered with the
API server by URL instead of through a Service, as the contract's webhook is.
"""

from __future__ import annotations

import base64
import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelserve.testbed.cache import cache_root
from modelserve.testbed.gobuild import GoModule, build
from modelserve.testbed.kube import FakeNode, KubeCluster, build_node
from modelserve.testbed.pki import CertificateAuthority
from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import ManagedProcess, free_port, http_ok, port_open, run

LWS_MODULE = GoModule(
    folder="lws",
    module="sigs.k8s.io/lws",
    # cmd/main.go is the manager's main package (the upstream image's /manager).
    binaries={"lws-controller-manager": "sigs.k8s.io/lws/cmd"},
)
LWS_GROUP = "leaderworkerset.x-k8s.io"
LWS_CRD = f"leaderworkersets.{LWS_GROUP}"
# Where LWS's own manifests live in its module, and what the test bed takes from them.
MANIFESTS = {
    "crd.yaml": "config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml",
    "role.yaml": "config/rbac/role.yaml",
    "metrics-auth-role.yaml": "config/rbac/auth_proxy_role.yaml",
    "webhooks.yaml": "config/webhook/manifests.yaml",
    "mutating-patch.yaml": "config/webhook/mutating-patch.yaml",
    "validating-patch.yaml": "config/webhook/validating-patch.yaml",
}
# The namespace LWS falls back to outside a pod (pkg/utils.GetOperatorNamespace), where its
# service account lives here as it does in LWS's own install.
LWS_NAMESPACE = "lws-system"
LWS_ACCOUNT = "lws-controller-manager"
# The environment LWS's pod webhook gives every container of a group (api/leaderworkerset/v1).
LEADER_ADDRESS_ENV = "LWS_LEADER_ADDRESS"
GROUP_SIZE_ENV = "LWS_GROUP_SIZE"
WORKER_INDEX_ENV = "LWS_WORKER_INDEX"
NODE_GPUS = 8


def lws_version() -> str:
    return LWS_MODULE.version()


def ensure_lws() -> Path:
    """The controller manager's binary, built once per pin into the cache."""
    return build(LWS_MODULE) / "lws-controller-manager"


def _module_folder() -> Path:
    """LWS's module in Go's module cache; `go mod download` inside the wrapper checks it
    against the wrapper's go.sum."""
    found = json.loads(
        run(
            ["go", "mod", "download", "-json", f"{LWS_MODULE.module}@{lws_version()}"],
            cwd=LWS_MODULE.path,
            env={"GOTOOLCHAIN": "local"},
        )
    )
    return Path(found["Dir"])


@functools.cache
def lws_manifests() -> Path:
    """A folder of LWS's CRD, ClusterRoles and webhook manifests, copied once per version
    into the cache (names as in MANIFESTS)."""
    target = cache_root() / "crds" / f"lws-{lws_version()}"
    if (target / ".complete").exists():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    source = _module_folder()
    for name, path in MANIFESTS.items():
        shutil.copyfile(source / path, staging / name)
    (staging / ".complete").write_text(f"{LWS_MODULE.module}@{lws_version()}\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _patched_webhooks(configuration: dict[str, Any], patch: list[dict[str, Any]]) -> None:
    """Apply LWS's kustomize patches (replace one webhook by index): they add the
    objectSelector that keeps the pod webhooks to LWS's own pods."""
    for operation in patch:
        assert operation["op"] == "replace", operation
        index = int(operation["path"].rsplit("/", 1)[-1])
        configuration["webhooks"][index] = operation["value"]


def build_webhook_configurations(
    manifests: Path, *, url: str, ca_bundle: bytes, prefix: str = "lws-"
) -> list[dict[str, Any]]:
    """LWS's Mutating- and ValidatingWebhookConfiguration, patched as its kustomization does,
    each webhook called at `url` + its path (instead of through LWS's Service), trusting
    `ca_bundle`; names prefixed so they cannot clash with others of the cluster."""
    documents = [d for d in yaml.safe_load_all((manifests / "webhooks.yaml").read_text()) if d]
    patches = {
        "MutatingWebhookConfiguration": "mutating-patch.yaml",
        "ValidatingWebhookConfiguration": "validating-patch.yaml",
    }
    bundle = base64.b64encode(ca_bundle).decode()
    for document in documents:
        _patched_webhooks(
            document, yaml.safe_load((manifests / patches[document["kind"]]).read_text())
        )
        document["metadata"]["name"] = prefix + document["metadata"]["name"]
        for webhook in document["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": url + path, "caBundle": bundle}
    return documents


def build_lws_configuration(
    *, webhook_port: int, cert_dir: Path, probe_port: int, metrics_port: int
) -> dict[str, Any]:
    """LWS's Configuration file: webhooks, metrics and probes on loopback, the serving
    certificate from `cert_dir` (tls.crt, tls.key) instead of LWS's own rotation (which
    writes a Secret and patches webhook configurations through a Service that the test bed
    does not have), one instance so no leader election."""
    return {
        "apiVersion": "config.lws.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{probe_port}"},
        "internalCertManagement": {"enable": False},
    }


def build_rbac(manifests: Path) -> list[dict[str, Any]]:
    """LWS's service account, its ClusterRoles (the manager's and the one the metrics
    endpoint's authentication needs) renamed `lws-*`, and their bindings."""
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": LWS_ACCOUNT, "namespace": LWS_NAMESPACE},
    }
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LWS_NAMESPACE}},
        account,
    ]
    for source in ("role.yaml", "metrics-auth-role.yaml"):
        role = yaml.safe_load((manifests / source).read_text())
        name = f"lws-{role['metadata']['name']}"
        role["metadata"] = {"name": name}
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": LWS_ACCOUNT, "namespace": LWS_NAMESPACE}
            ],
        }
        objects += [role, binding]
    return objects


def install_lws_crd(cluster: KubeCluster) -> None:
    """LWS's CRD in `cluster`, established (server-side: its schema embeds pod templates)."""
    cluster.kubectl("apply", "--server-side", "-f", str(lws_manifests() / "crd.yaml"))

    def established() -> bool:
        # Polled rather than `kubectl wait`, which fails when it reads the CRD before the
        # API server gave it any condition at all.
        conditions = cluster.get_json("crd", LWS_CRD).get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(established, timeout=30, what=f"CRD {LWS_CRD} established")


@dataclass
class RunningLWS:
    """The controller manager and what it registered with the cluster."""

    process: ManagedProcess
    probe_url: str
    metrics_port: int
    webhook_url: str
    webhook_configurations: list[tuple[str, str]]  # (kind, name)

    def stop(self, cluster: KubeCluster) -> None:
        # The pod webhooks fail closed: left registered, no LWS pod could be made.
        try:
            for kind, name in self.webhook_configurations:
                cluster.kubectl("delete", kind, name, "--ignore-not-found")
        finally:
            self.process.stop()


def start_lws(folder: Path, cluster: KubeCluster, *, timeout: float = 60.0) -> RunningLWS:
    """Install LWS's CRD and RBAC in `cluster` and run its controller manager as LWS's
    service account (the RBAC of LWS's config/rbac, nothing more), webhooks registered."""
    folder.mkdir(parents=True, exist_ok=True)
    manifests = lws_manifests()
    install_lws_crd(cluster)
    cluster.kubectl("apply", stdin=yaml.safe_dump_all(build_rbac(manifests)))
    kubeconfig = cluster.service_account_kubeconfig(LWS_NAMESPACE, LWS_ACCOUNT)

    authority = CertificateAuthority(folder / "lws-pki", "modelserve-lws-webhook-ca")
    serving = authority.issue("webhook", "lws-webhook", hosts=("127.0.0.1",), server=True)
    cert_dir = folder / "lws-certs"  # controller-runtime reads tls.crt and tls.key there
    cert_dir.mkdir(exist_ok=True)
    shutil.copyfile(serving.cert, cert_dir / "tls.crt")
    shutil.copyfile(serving.key, cert_dir / "tls.key")

    webhook_port, probe_port, metrics_port = free_port(), free_port(), free_port()
    config = folder / "lws-config.yaml"
    config.write_text(
        yaml.safe_dump(
            build_lws_configuration(
                webhook_port=webhook_port,
                cert_dir=cert_dir,
                probe_port=probe_port,
                metrics_port=metrics_port,
            )
        )
    )
    process = ManagedProcess(
        "lws-controller-manager",
        [ensure_lws(), f"--config={config}", "--leader-elect=false", "--zap-devel=false"],
        folder / "logs" / f"lws-controller-manager-{probe_port}.log",
        env={"KUBECONFIG": str(kubeconfig)},
    )
    url = f"https://127.0.0.1:{webhook_port}"
    running = RunningLWS(process, f"http://127.0.0.1:{probe_port}", metrics_port, url, [])
    try:
        process.start()
        process.wait_until(lambda: http_ok(f"{running.probe_url}/readyz"), timeout, "ready")
        process.wait_until(lambda: port_open(webhook_port), timeout, "serving its webhooks")
        for configuration in build_webhook_configurations(
            manifests, url=url, ca_bundle=authority.pair.cert.read_bytes()
        ):
            cluster.kubectl("apply", stdin=json.dumps(configuration))
            running.webhook_configurations.append(
                (configuration["kind"].lower(), configuration["metadata"]["name"])
            )
    except BaseException:
        running.stop(cluster)
        raise
    return running


def gpu_nodes(
    count: int, *, gpus: int = NODE_GPUS, prefix: str = "gpu-h100"
) -> tuple[FakeNode, ...]:
    """`count` KWOK nodes of `gpus` GPUs each (an 8-GPU node by default), for groups that
    span nodes."""
    return tuple(
        FakeNode(
            f"{prefix}-{index}",
            cpu="96",
            memory="1Ti",
            gpus=gpus,
            gpu_product="NVIDIA-H100-80GB-HBM3",
        )
        for index in range(count)
    )


def add_nodes(cluster: KubeCluster, nodes: tuple[FakeNode, ...]) -> None:
    """Register `nodes` with a running cluster; KWOK reports them Ready and runs (simulates)
    the pods bound to them."""
    cluster.kubectl("apply", stdin=yaml.safe_dump_all(build_node(node) for node in nodes))
    wanted = {node.name for node in nodes}

    def all_ready() -> bool:
        # Polled, as the CRD is: a node that KWOK has not yet given any condition would
        # make `kubectl wait` fail instead of wait.
        ready = {
            item["metadata"]["name"]
            for item in cluster.get_json("nodes")["items"]
            for condition in item.get("status", {}).get("conditions") or []
            if condition["type"] == "Ready" and condition["status"] == "True"
        }
        return wanted <= ready

    wait_for(all_ready, timeout=60, what=f"nodes {sorted(wanted)} Ready")
