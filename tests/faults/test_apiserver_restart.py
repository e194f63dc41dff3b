"""The API server restarted (its process stopped and started again; etcd kept) while the
gateway's discovery, the operator and the contract's admission webhook run against it.

While it is down, the gateway keeps routing to the servers it knew: its route table is in
memory, and requests never ask the API server. Once it is back, with no other restart:
the gateway's watches resume (a ModelServe made after the restart is routed, one deleted
after it is no longer), the operator reconciles a ModelServe applied after the restart,
and the webhook decides again (admits one ModelServe, refuses another with its reason).

A control plane of this module's own: stopping the session's API server would break every
other test module's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.kube import FakeNode, KubeCluster, start_cluster
from modelserve.testbed.metered_server import MeteredServer
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import (
    RunningContract,
    RunningOperator,
    RunningService,
    build_external_server,
    gateway_kubeconfig,
    install_crds,
    operator_kubeconfig,
    start_contract,
    start_operator,
    start_service,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.processes import ManagedProcess

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

NAMESPACE = "faults-apiserver"
BEFORE, AFTER = "known-before", "made-after"
# How long the API server stays down: long enough for every client to lose its
# connections and watches.
OUTAGE_SECONDS = 10.0
# Bound on each wait for recovery. The gateway renews its watches with a new list every
# GATEWAY_DISCOVERY_RESYNC_SECONDS (300 s): a wait shorter than that fails if the watch
# did not resume by itself.
RECOVERY_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults-apiserver")


@pytest.fixture(scope="module")
def cluster(logs: Path) -> Iterator[KubeCluster]:
    """A control plane of its own (pods simulated by KWOK: no pod runs here), with the
    ModelServe and Traefik CRDs."""
    cluster = start_cluster(logs / "kube", nodes=(FakeNode("cpu-0", "8", "16Gi"),), run_pods=False)
    try:
        install_crds(cluster)
        cluster.kubectl("create", "namespace", NAMESPACE)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def operator(
    cluster: KubeCluster, logs: Path, platform_store: MinioServer
) -> Iterator[RunningOperator]:
    running = start_operator(
        operator_kubeconfig(cluster),
        logs / "logs",
        {
            "OPERATOR_EXTERNAL_PROBE_INTERVAL": "1",
            "OPERATOR_MODEL_STORE_ENDPOINT": platform_store.endpoint,
            "OPERATOR_MODEL_STORE_ACCESS_KEY": platform_store.access_key,
            "OPERATOR_MODEL_STORE_SECRET_KEY": platform_store.secret_key,
            "OPERATOR_ROUTE_SERVICE": "modelserve-gateway@file",
        },
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def contract(
    cluster: KubeCluster, logs: Path, database_url: str, jwt_secret: str
) -> Iterator[RunningContract]:
    """The contract service with its webhooks; the cluster's admin is a platform admin."""
    with fresh_schema(database_url, "faults_apiserver_contract") as schema:
        running = start_contract(
            cluster,
            logs,
            schema_url(database_url, schema),
            {
                "JWT_SECRET": jwt_secret,
                "CONTRACT_INVENTORY_SECONDS": "0",
                "CONTRACT_DEFAULT_NAMESPACES": "*",
                "CONTRACT_ADMIN_GROUPS": "modelserve:admins,system:masters",
            },
        )
        try:
            yield running
        finally:
            running.stop(cluster)


@pytest.fixture(scope="module")
def gateway(
    cluster: KubeCluster, logs: Path, database_url: str, jwt_secret: str
) -> Iterator[RunningService]:
    """The gateway as its own service account, watching every namespace (no contract
    service: the discovery is under test, not the decisions)."""
    with fresh_schema(database_url, "faults_apiserver_gateway") as schema:
        service = start_service(
            "gateway",
            logs / "logs",
            {
                "JWT_SECRET": jwt_secret,
                "GATEWAY_DATABASE_URL": schema_url(database_url, schema),
                "GATEWAY_ADMIN_USERNAME": "admin",
                "GATEWAY_ADMIN_PASSWORD": "faults-admin-password",
                "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(cluster)),
            },
        )
        try:
            yield service
        finally:
            service.stop()


@pytest.fixture(scope="module")
def model_server() -> Iterator[MeteredServer]:
    with MeteredServer((BEFORE, AFTER)) as server:
        yield server


def apiserver(cluster: KubeCluster) -> ManagedProcess:
    return next(p for p in cluster.processes if p.name == "kube-apiserver")


def api_ready(cluster: KubeCluster) -> bool:
    try:
        return cluster.kubectl("get", "--raw", "/readyz").strip() == "ok"
    except RuntimeError:
        return False


def phase(cluster: KubeCluster, name: str) -> str | None:
    found: dict[str, Any] = cluster.get_json("ms", name, "-n", NAMESPACE)
    return (found.get("status") or {}).get("phase")


def apply(cluster: KubeCluster, body: dict[str, Any]) -> str | None:
    """Apply `body` as the cluster's admin: None when accepted, else kubectl's error."""
    try:
        cluster.kubectl("apply", stdin=yaml.safe_dump(body))
    except RuntimeError as error:
        return str(error)
    return None


def refused_by_webhook(cluster: KubeCluster) -> dict[str, Any]:
    """A llama.cpp ModelServe that sets a flag the operator owns: the webhook refuses it
    (`[owned_flag]`), for admins too."""
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": "owned-flag", "namespace": NAMESPACE},
        "spec": {
            "runtime": "llamacpp",
            "model": {"uri": "s3://inference-models/models/m/m.gguf", "format": "gguf"},
            "args": ["--port=9000"],
        },
    }


def test_discovery_operator_and_webhook_resume_after_an_api_server_restart(
    cluster: KubeCluster,
    operator: RunningOperator,
    contract: RunningContract,
    gateway: RunningService,
    model_server: MeteredServer,
    signer: TokenSigner,
    figure: Callable[[str, float], None],
) -> None:
    def server(name: str) -> dict[str, Any]:
        return build_external_server(
            name, NAMESPACE, owner="ann", served_name=name, url=model_server.url
        )

    headers = {"Authorization": f"Bearer {signer.sign('ann')}"}
    http = httpx.Client(base_url=gateway.url, headers=headers, timeout=30)

    def chat(model: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "2 + 3?"}]}
        return http.post("/v1/chat/completions", json=body)

    def routed(model: str) -> Callable[[], bool]:
        return lambda: chat(model).status_code == 200

    def unrouted(model: str) -> Callable[[], bool]:
        def probe() -> bool:
            answer = chat(model)
            return answer.status_code == 404 and (
                answer.json()["error"]["code"] == "model_not_found"
            )

        return probe

    with http:
        assert apply(cluster, server(BEFORE)) is None
        wait_for(routed(BEFORE), timeout=90, what=f"the gateway to route {BEFORE}")
        # Before the restart the webhook refuses with its reason: the same check after it.
        refusal = apply(cluster, refused_by_webhook(cluster))
        assert refusal is not None and "[owned_flag]" in refusal, refusal

        process = apiserver(cluster)
        process.stop()
        down_since = time.monotonic()
        assert not api_ready(cluster)
        # Meanwhile the gateway routes to what it knew, without asking the API server.
        while time.monotonic() - down_since < OUTAGE_SECONDS:
            answer = chat(BEFORE)
            assert answer.status_code == 200, answer.text
            time.sleep(1)
        back = time.monotonic()
        process.start()
        wait_for(lambda: api_ready(cluster), timeout=60, what="the API server to be ready")
        figure("API server restart: start to ready", since(back))

        # The webhook: admits the new ModelServe (the API server calls it again) and
        # refuses the bad one with the contract's reason, not a call failure.
        wait_for(
            lambda: apply(cluster, server(AFTER)) is None,
            timeout=RECOVERY_TIMEOUT,
            what=f"{AFTER} to be admitted",
            interval=0.2,
        )
        refusal = apply(cluster, refused_by_webhook(cluster))
        assert refusal is not None and "[owned_flag]" in refusal, refusal
        figure("API server restart: start to the webhook deciding again", since(back))
        # The operator reconciles what was applied after the restart.
        wait_for(
            lambda: phase(cluster, AFTER) == "Ready",
            timeout=RECOVERY_TIMEOUT,
            what=f"the operator to make {AFTER} Ready",
            interval=0.2,
        )
        figure(
            "API server restart: start to the operator reconciling a new ModelServe", since(back)
        )
        # The gateway's discovery sees both changes made after the restart.
        wait_for(
            routed(AFTER),
            timeout=RECOVERY_TIMEOUT,
            what=f"the gateway to route {AFTER}",
            interval=0.2,
        )
        figure("API server restart: start to the gateway routing a new ModelServe", since(back))
        cluster.kubectl("delete", "ms", BEFORE, "-n", NAMESPACE, "--wait=true", "--timeout=60s")
        wait_for(
            unrouted(BEFORE),
            timeout=RECOVERY_TIMEOUT,
            what=f"the gateway to forget {BEFORE}",
            interval=0.2,
        )
        assert chat(AFTER).status_code == 200
    # Nothing duplicated or lost in the cluster: exactly the ModelServe made after.
    names = [item["metadata"]["name"] for item in cluster.get_json("ms", "-n", NAMESPACE)["items"]]
    assert names == [AFTER]


def since(began: float) -> float:
    return time.monotonic() - began
