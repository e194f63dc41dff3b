"""A real Kubernetes control plane as local processes, with KWOK simulating the nodes.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the upstream
programs built from pinned Go modules; KWOK plays the kubelets, so Deployments
become ReplicaSets and Pods, the scheduler places them by real resource requests
(`nvidia.com/gpu` included) and pods reach Running with an IP.
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelserve.common.modelserve import GPU_PRODUCT_LABEL, GPU_RESOURCE
from modelserve.testbed.gobuild import binary, module_dir
from modelserve.testbed.llama_server import ensure_llama_server
from modelserve.testbed.pki import CertificateAuthority, KeyPair, service_account_keys
from modelserve.testbed.pods.containers import Programs
from modelserve.testbed.pods.forwarding import Forwarder
from modelserve.testbed.pods.network import PodNetwork, create_pod_network
from modelserve.testbed.pods.runner import RUN_SELECTOR, PodRunner
from modelserve.testbed.processes import ManagedProcess, free_port, http_ok, run

GPU_TAINT_KEY = GPU_RESOURCE
KWOK_NODE_LABEL = "type"
KWOK_NODE_VALUE = "kwok"
# The subject of the client certificate the API server presents to admission webhooks.
WEBHOOK_CLIENT_NAME = "kube-apiserver-webhook-client"
STAGES = Path(__file__).with_name("kwok_stages.yaml")


@dataclass(frozen=True)
class FakeNode:
    """A node KWOK keeps alive: its capacity is what the scheduler sees."""

    name: str
    cpu: str
    memory: str
    gpus: int = 0
    gpu_product: str | None = None


DEFAULT_NODES: tuple[FakeNode, ...] = (
    FakeNode("gpu-a100-0", cpu="32", memory="256Gi", gpus=4, gpu_product="NVIDIA-A100-SXM4-80GB"),
    FakeNode("gpu-l4-0", cpu="16", memory="64Gi", gpus=2, gpu_product="NVIDIA-L4"),
    FakeNode("cpu-0", cpu="16", memory="64Gi"),
)


def build_node(node: FakeNode) -> dict[str, Any]:
    """The Node object for a simulated node.

    GPU nodes carry the `nvidia.com/gpu` taint that GPU node pools have in managed
    clusters, so only pods that tolerate it (GPU workloads) land there.
    """
    capacity: dict[str, str] = {"cpu": node.cpu, "memory": node.memory, "pods": "110"}
    labels = {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        KWOK_NODE_LABEL: KWOK_NODE_VALUE,
    }
    spec: dict[str, Any] = {}
    if node.gpus:
        capacity[GPU_RESOURCE] = str(node.gpus)
        labels[GPU_PRODUCT_LABEL] = node.gpu_product or "NVIDIA-GPU"
        labels["nvidia.com/gpu.count"] = str(node.gpus)
        spec["taints"] = [{"key": GPU_TAINT_KEY, "value": "present", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
        },
        "spec": spec,
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "nodeInfo": {
                "kubeletVersion": "fake",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def build_kubeconfig(server: str, ca: Path, client: KeyPair) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "modelserve", "cluster": {"server": server, "certificate-authority": str(ca)}},
        ],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
            },
        ],
        "contexts": [{"name": "modelserve", "context": {"cluster": "modelserve", "user": "admin"}}],
        "current-context": "modelserve",
    }


@dataclass
class KubeCluster:
    """A running control plane. `kubeconfig` is what kubectl and Python clients use."""

    folder: Path
    server: str
    kubeconfig: Path
    ca: Path
    admin: KeyPair
    nodes: tuple[FakeNode, ...]
    authority: CertificateAuthority
    network: PodNetwork
    processes: list[ManagedProcess] = field(default_factory=list)
    runner: PodRunner | None = None
    # The CA of the client certificate the API server presents to every admission webhook
    # (its AdmissionConfiguration), and that certificate: a webhook trusts only that CA.
    webhook_authority: CertificateAuthority | None = None
    webhook_client_ca: Path | None = None
    webhook_client: KeyPair | None = None
    forwarders: dict[int, Forwarder] = field(default_factory=dict)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        argv = [str(binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        if stdin is None:
            return run(argv)
        path = self.folder / f"stdin-{time.monotonic_ns()}.yaml"
        path.write_text(stdin)
        try:
            return run([*argv, "-f", str(path)])
        finally:
            path.unlink()

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig that acts as a service account: its RBAC, nothing more."""
        token = self.kubectl("create", "token", name, "-n", namespace, "--duration=24h").strip()
        config = build_kubeconfig(self.server, self.ca, self.admin)
        config["users"] = [{"name": "admin", "user": {"token": token}}]
        path = self.folder / f"kubeconfig-{namespace}-{name}"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def user_kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig that acts as the person `user` in `groups` (a client certificate, as
        an identity provider would assert them); it may do what RBAC grants them."""
        pair = self.authority.issue(f"user-{user}", user, organizations=groups, client=True)
        path = self.folder / f"kubeconfig-user-{user}"
        path.write_text(yaml.safe_dump(build_kubeconfig(self.server, self.ca, pair)))
        path.chmod(0o600)
        return path

    def expose_to_pods(self, port: int) -> str:
        """The address (host:port) at which pods reach the host's loopback `port`."""
        if port not in self.forwarders:
            self.forwarders[port] = Forwarder(self.network.layout.host_address, port)
        return self.forwarders[port].endpoint

    def stop(self) -> None:
        for forwarder in self.forwarders.values():
            forwarder.stop()
        self.forwarders.clear()
        if self.runner is not None:
            self.runner.stop()  # every pod's processes end first
            self.runner = None
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        self.network.remove()


def build_admission_configuration(kubeconfig: Path) -> dict[str, Any]:
    """The API server's AdmissionConfiguration: for every webhook, the credentials of
    `kubeconfig` (its user `*`), so that webhooks can tell the API server from anyone else."""
    webhooks = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "WebhookAdmissionConfiguration",
        "kubeConfigFile": str(kubeconfig),
    }
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [
            {"name": plugin, "configuration": webhooks}
            for plugin in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")
        ],
    }


def _webhook_client(pki: Path) -> tuple[CertificateAuthority, KeyPair, Path]:
    """A CA of its own, the API server's client certificate for webhooks, and the
    kubeconfig (user `*`: any webhook) and admission configuration that present it."""
    authority = CertificateAuthority(pki / "webhook-client", "modelserve-webhook-client-ca")
    client = authority.issue("apiserver-webhook-client", WEBHOOK_CLIENT_NAME, client=True)
    kubeconfig = pki / "webhook-client" / "kubeconfig"
    users = [
        {
            "name": "*",
            "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
        }
    ]
    kubeconfig.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "users": users}))
    kubeconfig.chmod(0o600)
    admission = pki / "webhook-client" / "admission.yaml"
    admission.write_text(yaml.safe_dump(build_admission_configuration(kubeconfig)))
    return authority, client, admission


def _https_ok(url: str, ca: Path, client: KeyPair | None = None) -> bool:
    context = ssl.create_default_context(cafile=str(ca)) if client else ssl.create_default_context()
    if client:
        context.load_cert_chain(str(client.cert), str(client.key))
    else:  # the controllers' self-signed health endpoints
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, context=context, timeout=2) as response:
        return bool(response.status == 200)


def start_cluster(
    folder: Path,
    *,
    apiserver_port: int = 0,
    nodes: tuple[FakeNode, ...] = DEFAULT_NODES,
    timeout: float = 120.0,
    run_pods: bool = True,
) -> KubeCluster:
    """Start etcd, the control plane, KWOK and the pod runner on a pod network of its own;
    register `nodes`; wait until all are Ready. `run_pods=False` leaves every pod to KWOK
    (simulated), as a benchmark of thousands of servers needs."""
    folder.mkdir(parents=True, exist_ok=True)
    pki = folder / "pki"
    ca = CertificateAuthority(pki)
    port = apiserver_port or free_port()
    network = create_pod_network()
    layout = network.layout
    serving = ca.issue(
        "apiserver",
        "kube-apiserver",
        hosts=(
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            layout.first_service_ip,
        ),
        server=True,
    )
    admin = ca.issue("admin", "modelserve-admin", organizations=("system:masters",), client=True)
    # The nodes' kubelet endpoint is KWOK's server on loopback, over TLS, as the API
    # server expects of a kubelet (`kubectl logs` goes there).
    kubelet = ca.issue("kubelet", "kwok-kubelet", hosts=("127.0.0.1",), server=True)
    kubelet_client = ca.issue(
        "apiserver-kubelet-client", "kube-apiserver-kubelet-client", client=True
    )
    sa = service_account_keys(pki)
    server = f"https://127.0.0.1:{port}"
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(build_kubeconfig(server, ca.pair.cert, admin)))
    cluster = KubeCluster(folder, server, kubeconfig, ca.pair.cert, admin, nodes, ca, network)
    cluster.webhook_authority, cluster.webhook_client, admission = _webhook_client(pki)
    cluster.webhook_client_ca = cluster.webhook_authority.pair.cert
    logs = folder / "logs"
    try:
        etcd_port, etcd_peer = free_port(), free_port()
        etcd = ManagedProcess(
            "etcd",
            [
                binary("etcd"),
                "--name=testbed",
                f"--data-dir={folder / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=testbed=http://127.0.0.1:{etcd_peer}",
                # A throw-away store: durability would only cost fsyncs on a shared disk.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            logs / "etcd.log",
        )
        cluster.processes.append(etcd)
        etcd.start()
        etcd.wait_until(lambda: http_ok(f"http://127.0.0.1:{etcd_port}/health"), 30, "healthy")

        apiserver = ManagedProcess(
            "kube-apiserver",
            [
                binary("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                # No default route here: advertise loopback and do not reconcile
                # the `kubernetes` endpoints against an unreachable address.
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={pki}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.pair.cert}",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={layout.services}",
                # Nodes are reached at their InternalIP (loopback: KWOK's server), never
                # by a host name that would have to resolve.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-certificate-authority={ca.pair.cert}",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                "--authorization-mode=RBAC",
                f"--admission-control-config-file={admission}",
                "--allow-privileged=true",
                "--storage-backend=etcd3",
                "--v=1",
            ],
            logs / "kube-apiserver.log",
        )
        cluster.processes.append(apiserver)
        apiserver.start()
        apiserver.wait_until(
            lambda: _https_ok(f"{server}/readyz", ca.pair.cert, admin), timeout, "ready"
        )

        common = [
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            # The defaults (20 requests/s, bursts of 30) suit small clusters; clusters that run
            # hundreds of model servers raise them, and so does the test bed, whose benchmarks
            # would otherwise measure the controllers' client throttle instead of ModelServe.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        ]
        cm_port = free_port()
        controller_manager = ManagedProcess(
            "kube-controller-manager",
            [
                binary("kube-controller-manager"),
                *common,
                f"--secure-port={cm_port}",
                f"--service-account-private-key-file={sa.key}",
                f"--root-ca-file={ca.pair.cert}",
                f"--cluster-signing-cert-file={ca.pair.cert}",
                f"--cluster-signing-key-file={ca.pair.key}",
                f"--service-cluster-ip-range={layout.services}",
                "--use-service-account-credentials=true",
                "--v=1",
            ],
            logs / "kube-controller-manager.log",
        )
        scheduler_port = free_port()
        scheduler = ManagedProcess(
            "kube-scheduler",
            [binary("kube-scheduler"), *common, f"--secure-port={scheduler_port}", "--v=1"],
            logs / "kube-scheduler.log",
        )
        kwok_port = free_port()
        kwok = ManagedProcess(
            "kwok",
            [
                binary("kwok"),
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-label-selector={KWOK_NODE_LABEL}={KWOK_NODE_VALUE}",
                # Simulated pods get addresses in the pod network, where nothing listens.
                f"--cidr={layout.simulated_pods}",
                # Renew a Lease per node as kubelets do: without it the node controller
                # marks every node, and then every pod, not Ready about once a minute.
                "--node-lease-duration-seconds=40",
                # The API server dials a node's address for logs: it stays on loopback.
                "--node-ip=127.0.0.1",
                f"--node-port={kwok_port}",
                f"--server-address=127.0.0.1:{kwok_port}",
                f"--tls-cert-file={kubelet.cert}",
                f"--tls-private-key-file={kubelet.key}",
                f"--config={STAGES}",
                # `kubectl logs` of the pods the runner runs: a Logs resource per pod.
                "--enable-crds=Logs",
                # Those pods are the runner's: KWOK leaves their status alone.
                *([f"--disregard-status-with-label-selector={RUN_SELECTOR}"] if run_pods else []),
            ],
            logs / "kwok.log",
        )
        cluster.kubectl("apply", "--server-side", "-f", str(kwok_logs_crd()))
        cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=30s", "crd/logs.kwok.x-k8s.io"
        )
        for process in (controller_manager, scheduler, kwok):
            cluster.processes.append(process)
            process.start()
        controller_manager.wait_until(
            lambda: _https_ok(f"https://127.0.0.1:{cm_port}/healthz", ca.pair.cert), 60, "healthy"
        )
        scheduler.wait_until(
            lambda: _https_ok(f"https://127.0.0.1:{scheduler_port}/healthz", ca.pair.cert),
            60,
            "healthy",
        )
        kwok.wait_until(
            lambda: _https_ok(f"https://127.0.0.1:{kwok_port}/healthz", ca.pair.cert),
            60,
            "healthy",
        )

        cluster.kubectl("apply", stdin=yaml.safe_dump_all(build_node(node) for node in nodes))
        kwok.wait_until(lambda: _nodes_ready(cluster), timeout, "reporting all nodes Ready")
        # Pods can only be admitted once the token controller made the default service account.
        controller_manager.wait_until(
            lambda: _exists(cluster, "serviceaccount", "default", "default"),
            timeout,
            "creating the default service account",
        )
        if not run_pods:
            return cluster
        cluster.runner = PodRunner(
            kubeconfig,
            network,
            folder / "runner",
            Programs(llama_server=ensure_llama_server, scripts=Path(sys.executable).parent),
            node_ip="127.0.0.1",
        )
        cluster.runner.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def kwok_logs_crd() -> Path:
    """KWOK's own definition of its `Logs` resource, from the pinned module's source."""
    return module_dir("kwok") / "kustomize" / "crd" / "bases" / "kwok.x-k8s.io_logs.yaml"


def _nodes_ready(cluster: KubeCluster) -> bool:
    items = cluster.get_json("nodes")["items"]
    ready = {
        item["metadata"]["name"]
        for item in items
        for condition in item.get("status", {}).get("conditions", [])
        if condition["type"] == "Ready" and condition["status"] == "True"
    }
    return ready >= {node.name for node in cluster.nodes}


def _exists(cluster: KubeCluster, kind: str, name: str, namespace: str) -> bool:
    try:
        cluster.kubectl("get", kind, name, "-n", namespace)
    except RuntimeError:
        return False
    return True
