"""End to end through a real Gateway API implementation: with OPERATOR_ROUTE_KIND=httproute,
a request to Traefik (its Kubernetes Gateway provider) for `/{server-id}/v1/models` reaches
the gateway through the HTTPRoute the operator made, path kept.

The gateway is a stand-in that serves files, inside the pod network: a Service's
EndpointSlice may not hold a loopback or link-local address (the API server refuses
both), so it listens on a pod IP, which only this machine routes. Its Service has no
selector; the test writes the EndpointSlice, as a controller would for a pod.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelserve.testbed.gateway_api import (
    build_gateway,
    build_gateway_class,
    build_reference_grant,
    install_gateway_api_crds,
    start_gateway_traefik,
)
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningOperator, operator_kubeconfig, start_operator
from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import ManagedProcess, http_ok
from modelserve.testbed.testing_operator import apply, get, manifest
from modelserve.testbed.traefik import RunningTraefik

pytestmark = [pytest.mark.kube, pytest.mark.minio]
SERVICE_PORT = 8200
LISTENER = "http"


@dataclass(frozen=True)
class StandIn:
    """The stand-in gateway: where it listens, the folder it serves, its Service."""

    address: str
    port: int
    files: Path
    namespace: str
    service: str

    def serve(self, path: str, body: dict[str, Any]) -> None:
        target = self.files / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(body))


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def gateway_api(crds: KubeCluster) -> KubeCluster:
    install_gateway_api_crds(crds)
    return crds


@pytest.fixture(scope="module")
def stand_in(gateway_api: KubeCluster, testbed_dir: Path) -> Iterator[StandIn]:
    """A file server on a pod IP, behind Service `gateway` of a namespace of its own."""
    kube = gateway_api
    namespace, service = _unique("gw"), "gateway"
    address, port = kube.network.allocate(), 8200
    files = testbed_dir / namespace
    files.mkdir(parents=True)
    process = ManagedProcess(
        "stand-in-gateway",
        [
            *kube.network.exec_prefix(),
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            address,
            "--directory",
            str(files),
        ],
        testbed_dir / "logs" / f"{namespace}-stand-in.log",
    )
    process.start()
    try:
        process.wait_until(lambda: http_ok(f"http://{address}:{port}/"), 30, "serving")
        kube.kubectl("create", "namespace", namespace)
        objects = [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service, "namespace": namespace},
                "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": port}]},
            },
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{service}-1",
                    "namespace": namespace,
                    "labels": {"kubernetes.io/service-name": service},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            },
        ]
        for obj in objects:
            kube.kubectl("apply", stdin=json.dumps(obj))
        yield StandIn(address, port, files, namespace, service)
    finally:
        process.stop()
        kube.network.release(address)
        kube.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false")


@pytest.fixture(scope="module")
def traefik(gateway_api: KubeCluster, testbed_dir: Path, stand_in: StandIn) -> Iterator[Any]:
    """Traefik as the Gateway API implementation, and a Gateway of it whose listener is
    Traefik's `web` entry point; (Traefik, the Gateway's name)."""
    kube = gateway_api
    running: RunningTraefik = start_gateway_traefik(testbed_dir / "traefik-gateway", kube)
    class_name, gateway = _unique("traefik"), "public"
    kube.kubectl("apply", stdin=json.dumps(build_gateway_class(class_name)))
    body = build_gateway(
        gateway, stand_in.namespace, class_name, listener=LISTENER, port=running.port
    )
    kube.kubectl("apply", stdin=json.dumps(body))
    yield running, gateway
    running.stop()
    kube.kubectl("delete", "gatewayclass", class_name, "--ignore-not-found", "--wait=false")


@pytest.fixture
def operator(
    gateway_api: KubeCluster,
    testbed_dir: Path,
    platform_store: MinioServer,
    smollm2_uri: str,
    stand_in: StandIn,
    traefik: Any,
) -> Iterator[RunningOperator]:
    _, gateway = traefik
    running = start_operator(
        operator_kubeconfig(gateway_api),
        testbed_dir / "logs" / "gateway-api-operator",
        {
            "OPERATOR_MODEL_STORE_ENDPOINT": gateway_api.expose_to_pods(platform_store.port),
            "OPERATOR_MODEL_STORE_ACCESS_KEY": platform_store.access_key,
            "OPERATOR_MODEL_STORE_SECRET_KEY": platform_store.secret_key,
            "OPERATOR_ROUTE_KIND": "httproute",
            "OPERATOR_ROUTE_SERVICE": stand_in.service,
            "OPERATOR_ROUTE_SERVICE_NAMESPACE": stand_in.namespace,
            "OPERATOR_ROUTE_SERVICE_PORT": str(SERVICE_PORT),
            "OPERATOR_ROUTE_GATEWAY_NAME": gateway,
            "OPERATOR_ROUTE_GATEWAY_NAMESPACE": stand_in.namespace,
            "OPERATOR_ROUTE_GATEWAY_SECTION_NAME": LISTENER,
        },
    )
    yield running
    running.stop()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_request_reaches_the_gateway_through_the_operators_httproute(
    gateway_api: KubeCluster,
    namespace: str,
    stand_in: StandIn,
    traefik: Any,
    operator: RunningOperator,
) -> None:
    running, _ = traefik
    kube = gateway_api
    # Gateway API refuses a backend in another namespace unless that namespace allows it.
    grant = build_reference_grant(stand_in.namespace, stand_in.service, namespace)
    kube.kubectl("apply", stdin=json.dumps(grant))
    name = apply(kube, namespace, manifest("llamacpp-cpu.yaml", spec__replicas=0))
    uid = get(kube, namespace, "ms", name)["metadata"]["uid"]
    models = {"object": "list", "data": [{"id": "smollm2-cpu", "object": "model"}]}
    stand_in.serve(f"/{uid}/v1/models", models)
    other = str(uuid.uuid4())
    stand_in.serve(f"/{other}/v1/models", models)

    url = f"{running.url}/{uid}/v1/models"
    try:
        _, body = wait_for(
            lambda: ((answer := _get(url))[0] == 200 and answer) or None,
            timeout=60,
            what=f"Traefik to route {url} through the HTTPRoute",
        )
    except TimeoutError as error:
        route = get(kube, namespace, "httproute", name)
        raise AssertionError(
            f"not routed; the HTTPRoute's status: {json.dumps(route.get('status'))}"
        ) from error
    assert json.loads(body) == models  # the path reached the gateway as it was asked for

    # The route is the server's alone: another id has no route (and no catch-all here).
    assert _get(f"{running.url}/{other}/v1/models")[0] == 404

    # Traefik took the route: accepted on the Gateway's listener, its backend resolved.
    (parent,) = get(kube, namespace, "httproute", name)["status"]["parents"]
    conditions = {c["type"]: c["status"] for c in parent["conditions"]}
    assert parent["parentRef"]["sectionName"] == LISTENER
    assert conditions["Accepted"] == "True" and conditions["ResolvedRefs"] == "True"
