"""Discovery against the real control plane: the gateway's route table sees a server's
endpoints appear, stop being ready and go away, from EndpointSlices it watches with its
own service account (services/gateway/deploy/rbac.yaml).

No operator runs here: the test makes the ModelServe (its status written as the operator
would), its Service and EndpointSlices itself. The slices' addresses are in
10.244.200.0/24, which nothing dials: the test reads the table, it sends no request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes import config as k8s_config

from modelserve.gateway.balancing import Endpoint
from modelserve.gateway.discovery import Discovery
from modelserve.gateway.endpoints import MANAGED_BY_LABEL, OPERATOR, SERVICE_NAME_LABEL
from modelserve.gateway.routing import NotReady, RouteTable, Target
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.polling import wait_for

pytestmark = [pytest.mark.kube]

NAME = "qwen"
# What the operator's builders put on a server's Service (operator builders.labels).
SERVICE_LABELS = {
    "app.kubernetes.io/name": "modelserve-server",
    "app.kubernetes.io/instance": NAME,
    MANAGED_BY_LABEL: OPERATOR,
    "llm.modelserve.io/modelserve": NAME,
}
# Slices of our own: the EndpointSlice controller leaves those of another manager alone.
SLICE_MANAGER = "tests.modelserve.io"


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "labels": SERVICE_LABELS},
        "spec": {
            "selector": {"llm.modelserve.io/modelserve": NAME},
            "ports": [{"name": "http", "port": 8080, "targetPort": "http"}],
        },
    }


def endpoint_slice(*endpoints: tuple[str, dict[str, bool]]) -> dict[str, Any]:
    labels = {
        SERVICE_NAME_LABEL: NAME,
        MANAGED_BY_LABEL: OPERATOR,
        "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{NAME}-by-hand", "labels": labels},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [address], "conditions": conditions} for address, conditions in endpoints
        ],
    }


def modelserve() -> dict[str, Any]:
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": NAME},
        "spec": {
            "runtime": "llamacpp",
            "model": {"uri": "s3://platform/qwen.Q4_0.gguf", "format": "gguf", "servedName": NAME},
        },
    }


def apply(kube: KubeCluster, namespace: str, body: dict[str, Any]) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body))


def test_the_endpoint_slice_controller_copies_the_service_labels(
    crds: KubeCluster, namespace: str
) -> None:
    # Why discovery may select slices by the operator's managed-by label: the controller
    # copies a Service's labels onto the slices it makes (all but its reserved ones).
    apply(crds, namespace, service())

    def made() -> dict[str, str] | None:
        found = crds.get_json(
            "endpointslices", "-n", namespace, "-l", f"{SERVICE_NAME_LABEL}={NAME}"
        )
        items = found["items"]
        return items[0]["metadata"]["labels"] if items else None

    labels = wait_for(made, timeout=30, what="the controller's EndpointSlice of the Service")
    assert labels[MANAGED_BY_LABEL] == OPERATOR
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert {key: labels[key] for key in SERVICE_LABELS} == SERVICE_LABELS


def test_the_table_follows_a_server_s_endpoints(
    crds: KubeCluster, namespace: str, gateway_kube: str
) -> None:
    apply(crds, namespace, modelserve())
    uid = crds.get_json("ms", NAME, "-n", namespace)["metadata"]["uid"]
    status = json.dumps({"status": {"phase": "Ready", "readyReplicas": 2}})
    crds.kubectl(
        "patch", f"ms/{NAME}", "-n", namespace, "--subresource=status", "--type=merge", "-p", status
    )  # fmt: skip
    apply(crds, namespace, service())
    ready, terminating = {"ready": True}, {"ready": False, "serving": True, "terminating": True}
    first, second = "10.244.200.11", "10.244.200.12"
    apply(crds, namespace, endpoint_slice((first, ready)))

    async def scenario() -> None:
        api = k8s_config.new_client_from_config(config_file=gateway_kube)
        table = RouteTable()
        discovery = Discovery(api, table, namespaces=None, resync_seconds=300)
        await discovery.start()
        try:
            await follow(crds, namespace, table)
        finally:
            await discovery.close()
            api.close()

    async def until(check: Callable[[], Any], what: str) -> Any:
        for _ in range(300):
            found = check()
            if found:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    async def follow(kube: KubeCluster, namespace: str, table: RouteTable) -> None:
        target: Target = await until(lambda: table.server(uid), "the ModelServe in the table")
        assert table.synced
        url = f"http://{first}:8080/v1"
        await until(lambda: table.serving(target), "its endpoint, ready")
        assert table.endpoints_of(target) == (Endpoint(url),)
        assert table.choose(target) == Endpoint(url)

        # The pod terminates: it gets no new requests, and the server none at all.
        await asyncio.to_thread(
            apply, kube, namespace, endpoint_slice((first, terminating), (second, ready))
        )
        await until(lambda: len(table.endpoints_of(target)) == 2, "the second endpoint")
        assert {table.choose(target) for _ in range(4)} == {Endpoint(f"http://{second}:8080/v1")}
        await asyncio.to_thread(apply, kube, namespace, endpoint_slice((second, terminating)))
        await until(lambda: not table.serving(target), "no endpoint ready")
        found = table.readiness(target)
        assert isinstance(found, NotReady)
        assert f"{namespace}/{NAME} has no ready endpoint" in found.message

        # The slice goes away: so do the endpoints.
        await asyncio.to_thread(
            kube.kubectl, "delete", "endpointslice", f"{NAME}-by-hand", "-n", namespace
        )
        await until(lambda: table.endpoints_of(target) == (), "the endpoints to go")

    asyncio.run(scenario())
