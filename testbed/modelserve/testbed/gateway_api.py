"""Gateway API on the test bed: its standard-channel CRDs, and the objects a Gateway API
implementation (Traefik's `kubernetesgateway` provider) needs to route an HTTPRoute.

The CRDs come from the Go module sigs.k8s.io/gateway-api (its config/crd/standard/),
fetched with `go mod download` through the module proxy, checked against a pinned sum
and kept in the test bed's cache by version, as Traefik's own CRDs are. The version is
the one Traefik's Go module (traefik.TRAEFIK_MODULE_VERSION) requires, so that Traefik
finds every kind it watches.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from modelserve.testbed.cache import cache_root
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.processes import free_port, run
from modelserve.testbed.traefik import (
    PING_ENTRYPOINT,
    WEB_ENTRYPOINT,
    RunningTraefik,
    account_token,
    run_traefik,
    traefik_crds,
)

GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"
GATEWAY_API_VERSION = "v1.6.1"
GATEWAY_API_SUM = "h1:mock6phZbI6rvZerwrVNk7hVNymQgHo+6sJ81Ia7ftY="
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
STANDARD_CRDS = "config/crd/standard"
# The controller name Traefik's provider claims GatewayClasses by.
TRAEFIK_CONTROLLER = "traefik.io/gateway-controller"


def _module_folder() -> Path:
    """The Gateway API module in Go's module cache, checked against the pinned sum."""
    with tempfile.TemporaryDirectory() as empty:
        # An empty folder and -mod=mod: no go.mod is needed and none is read.
        answer = run(
            ["go", "mod", "download", "-json", f"{GATEWAY_API_MODULE}@{GATEWAY_API_VERSION}"],
            cwd=Path(empty),
            env={"GOFLAGS": "-mod=mod"},
        )
    found = json.loads(answer)
    if found.get("Sum") != GATEWAY_API_SUM:
        raise RuntimeError(
            f"{GATEWAY_API_MODULE}@{GATEWAY_API_VERSION} has sum {found.get('Sum')!r}, "
            f"not the pinned {GATEWAY_API_SUM}"
        )
    return Path(found["Dir"])


def _is_crd(path: Path) -> bool:
    """The standard folder also holds a ValidatingAdmissionPolicy (safe upgrades), which
    the test bed has no use for."""
    return any(
        document and document.get("kind") == "CustomResourceDefinition"
        for document in yaml.safe_load_all(path.read_text())
    )


@functools.cache
def gateway_api_crds() -> Path:
    """A folder of the standard channel's CRDs (HTTPRoute, Gateway, GatewayClass,
    ReferenceGrant, ...), fetched once per version into the cache."""
    target = cache_root() / "crds" / f"gateway-api-{GATEWAY_API_VERSION}"
    if (target / ".complete").exists():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for source in sorted((_module_folder() / STANDARD_CRDS).glob("*.yaml")):
        if _is_crd(source):
            shutil.copyfile(source, staging / source.name)
    (staging / ".complete").write_text(f"{GATEWAY_API_MODULE}@{GATEWAY_API_VERSION}\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def install_gateway_api_crds(cluster: KubeCluster) -> None:
    """Gateway API's standard CRDs in `cluster`, established. Server-side, as the project
    applies them: their schemas are too large for a client-side apply's annotation."""
    files = ["-f", str(gateway_api_crds())]
    cluster.kubectl("apply", "--server-side", *files)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", *files)


def build_gateway_class(name: str) -> dict[str, Any]:
    """A GatewayClass that Traefik's Gateway provider takes charge of."""
    return {
        "apiVersion": f"{GATEWAY_API_GROUP}/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": TRAEFIK_CONTROLLER},
    }


def build_gateway(
    name: str, namespace: str, class_name: str, *, listener: str, port: int
) -> dict[str, Any]:
    """A Gateway of one HTTP listener on `port` (Traefik serves it on its entry point of
    that port), accepting routes from every namespace: ModelServes live in others."""
    return {
        "apiVersion": f"{GATEWAY_API_GROUP}/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [
                {
                    "name": listener,
                    "protocol": "HTTP",
                    "port": port,
                    "allowedRoutes": {"namespaces": {"from": "All"}},
                }
            ],
        },
    }


def build_reference_grant(namespace: str, service: str, from_namespace: str) -> dict[str, Any]:
    """Lets HTTPRoutes of `from_namespace` lead to Service `service` of `namespace`: Gateway
    API refuses a backend in another namespace without one."""
    return {
        "apiVersion": f"{GATEWAY_API_GROUP}/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": f"httproutes-from-{from_namespace}", "namespace": namespace},
        "spec": {
            "from": [
                {"group": GATEWAY_API_GROUP, "kind": "HTTPRoute", "namespace": from_namespace}
            ],
            "to": [{"group": "", "kind": "Service", "name": service}],
        },
    }


def traefik_gateway_rbac() -> Path:
    """Traefik's ClusterRole for its Gateway provider and the binding of its account, from
    the documentation folder of Traefik's Go module (beside its CRDs)."""
    return traefik_crds().with_name("kubernetes-gateway-rbac.yml")


def build_gateway_arguments(
    *, port: int, ping_port: int, access_log: Path, api_server: str, token_file: Path, ca_file: Path
) -> list[str]:
    """Traefik with its Kubernetes Gateway provider only: entry point `web` on loopback
    (a Gateway listener of the same port is served there), ping on another; nothing sent
    to traefik.io."""
    provider = "--providers.kubernetesGateway"
    return [
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        f"--entryPoints.{WEB_ENTRYPOINT}.address=127.0.0.1:{port}",
        f"--entryPoints.{PING_ENTRYPOINT}.address=127.0.0.1:{ping_port}",
        "--ping=true",
        f"--ping.entryPoint={PING_ENTRYPOINT}",
        "--providers.providersThrottleDuration=100ms",
        f"{provider}=true",
        f"{provider}.endpoint={api_server}",
        f"{provider}.token={token_file}",
        f"{provider}.certAuthFilePath={ca_file}",
        f"{provider}.throttleDuration=0s",
        "--log.level=INFO",
        "--log.noColor=true",
        "--accessLog=true",
        f"--accessLog.filePath={access_log}",
    ]


def start_gateway_traefik(folder: Path, cluster: KubeCluster) -> RunningTraefik:
    """Run Traefik as a Gateway API implementation of `cluster` (its GatewayClasses of
    controller `traefik.io/gateway-controller`), entry point `web` on a free loopback port.

    The cluster needs Gateway API's CRDs (`install_gateway_api_crds`). A Gateway's HTTP
    listener on the entry point's port (`RunningTraefik.port`) is served there.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port, ping_port = free_port(), free_port()
    arguments = build_gateway_arguments(
        port=port,
        ping_port=ping_port,
        access_log=folder / "logs" / f"traefik-gateway-{port}-access.log",
        api_server=cluster.server,
        token_file=account_token(cluster, traefik_gateway_rbac(), folder / "traefik-gateway-token"),
        ca_file=cluster.ca,
    )
    return run_traefik("traefik-gateway", port, ping_port, arguments, folder / "logs")
