"""A server's detail and controls through the gateway: its conditions and loading state
(GET /status), its Kubernetes Events (GET /status/{id}/events) and its replicas (POST
/scale/{id}), against the real control plane with KWOK nodes, the operator, the gateway's
own service account (services/gateway/deploy/rbac.yaml) and, for scale limits, the real
contract service and its admission webhook."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from kubernetes import client as k8s

from modelserve.common.modelserve import GROUP, OWNER_LABEL, PLURAL, VERSION
from modelserve.common.timestamps import epoch_seconds
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningContract, RunningOperator, RunningService
from modelserve.testbed.polling import wait_for

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.gateway.conftest import ModelStore

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio]

# A vLLM server of the safetensors test model: KWOK marks its pods Running and Ready.
SERVE = {"model_name": "Tiny-ST", "runtime": "vllm", "gpus": 1}


def spec_replicas(kube_api: k8s.ApiClient, namespace: str, name: str) -> int:
    found = k8s.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    replicas: int = found["spec"]["replicas"]
    return replicas


def create_modelserve(kube_api: k8s.ApiClient, namespace: str, body: dict[str, Any]) -> str:
    """A ModelServe made as kubectl would (not through the gateway): its uid."""
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelServe", **body}
    created = k8s.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, manifest
    )
    uid: str = created["metadata"]["uid"]
    return uid


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def test_a_server_s_conditions_state_events_and_scale(
    crds: KubeCluster,
    gateway_kube: str,
    operator: RunningOperator,
    namespace: str,
    kube_api: k8s.ApiClient,
    model_store: ModelStore,
    start_gateway: Callable[..., RunningService],
    as_user: Callable[..., httpx.Client],
) -> None:
    gateway = start_gateway(
        GATEWAY_KUBECONFIG=gateway_kube,
        GATEWAY_DOWNLOAD_URL=model_store.url,
        GATEWAY_NAMESPACE=namespace,
        GATEWAY_WATCH_NAMESPACES=namespace,
    )
    alice, bob = as_user(gateway, "alice"), as_user(gateway, "bob")
    root = as_user(gateway, "root", roles=("admin",))
    served = alice.post("/serve", json=SERVE)
    assert served.status_code == 201, served.text
    server = served.json()
    sid, name = server["server_id"], server["name"]
    assert server["conditions"] == []  # before the operator's first status

    # Ready, loaded, with the operator's conditions.
    def loaded() -> dict[str, Any] | None:
        status: dict[str, Any] = alice.get(f"/status/{sid}").json()
        return status if status["status"] == "Ready" and status["state"] == "loaded" else None

    status = wait_for(loaded, timeout=90, what="alice's server Ready and loaded")
    assert (status["replicas"], status["ready_replicas"], status["desired_replicas"]) == (1, 1, 1)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True", conditions
    assert set(conditions["Ready"]) == {
        "type",
        "status",
        "reason",
        "message",
        "last_transition_time",
    }
    assert epoch_seconds(conditions["Ready"]["last_transition_time"]) is not None
    (listed,) = [s for s in alice.get("/status").json() if s["server_id"] == sid]
    assert (listed["state"], listed["conditions"]) == ("loaded", status["conditions"])

    # Its events: the operator's on the ModelServe, the scheduler's on its pod; newest first.
    def events_of_both() -> list[dict[str, Any]] | None:
        events: list[dict[str, Any]] = alice.get(f"/status/{sid}/events").json()
        kinds = {event["object"].partition("/")[0] for event in events}
        return events if {"ModelServe", "Pod"} <= kinds else None

    events = wait_for(events_of_both, timeout=60, what="events of the server and its pod")
    for event in events:
        involved = event["object"].partition("/")[2]
        assert involved == name or involved.startswith(f"{name}-"), event
        assert event["type"] in ("Normal", "Warning") and event["count"] >= 1
    seen = [epoch_seconds(event["last_seen"]) or 0.0 for event in events]
    assert seen == sorted(seen, reverse=True)
    assert any(e["source"] == "modelserve-operator" for e in events if "ModelServe/" in e["object"])
    assert len(alice.get(f"/status/{sid}/events", params={"limit": 1}).json()) == 1
    assert alice.get(f"/status/{sid}/events", params={"limit": 0}).status_code == 422

    # Someone else's server is not there: not its events, not to scale.
    for response in (
        bob.get(f"/status/{sid}/events"),
        bob.post(f"/scale/{sid}", json={"replicas": 3}),
    ):
        assert response.status_code == 404, response.text
        assert error_code(response) == "server_not_found"
    assert spec_replicas(kube_api, namespace, name) == 1

    # Replicas out of the CRD's bounds, or no count at all, are refused before the cluster.
    for body in (
        {"replicas": -1},
        {"replicas": 101},
        {"replicas": "two"},
        {},
        {"replicas": 2, "x": 1},
    ):
        refused = alice.post(f"/scale/{sid}", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert error_code(refused) == "invalid_request"

    # Alice scales hers to 2; the Deployment follows, and its events say so.
    scaled = alice.post(f"/scale/{sid}", json={"replicas": 2})
    assert scaled.status_code == 200, scaled.text
    assert (scaled.json()["server_id"], scaled.json()["replicas"]) == (sid, 2)
    assert spec_replicas(kube_api, namespace, name) == 2

    def two_ready() -> dict[str, Any] | None:
        status: dict[str, Any] = alice.get(f"/status/{sid}").json()
        return status if (status["ready_replicas"], status["desired_replicas"]) == (2, 2) else None

    wait_for(two_ready, timeout=90, what="two ready replicas")

    def deployment_scaled() -> bool:
        events = alice.get(f"/status/{sid}/events").json()
        return any(
            e["object"] == f"Deployment/{name}" and e["reason"] == "ScalingReplicaSet"
            for e in events
        )

    wait_for(deployment_scaled, timeout=60, what="the Deployment's scaling event")

    # An admin scales anyone's: to 0 keeps the server, without pods.
    stopped = root.post(f"/scale/{sid}", json={"replicas": 0})
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["replicas"] == 0
    wait_for(
        lambda: alice.get(f"/status/{sid}").json()["ready_replicas"] == 0,
        timeout=90,
        what="no ready replica",
    )

    # What cannot be scaled by hand says why: a server outside the cluster, and one whose
    # replicas the autoscaler chooses (which sleeps without requests).
    external = create_modelserve(
        kube_api,
        namespace,
        {
            "metadata": {"name": "elsewhere", "labels": {OWNER_LABEL: "alice"}},
            "spec": {
                "runtime": "external",
                "model": {"servedName": "elsewhere"},
                "external": {"url": "http://127.0.0.1:9/v1"},
            },
        },
    )
    on_demand = create_modelserve(
        kube_api,
        namespace,
        {
            "metadata": {"name": "on-demand", "labels": {OWNER_LABEL: "alice"}},
            "spec": {
                "runtime": "vllm",
                "model": {"uri": model_store.folder["uri"], "servedName": "on-demand"},
                "replicas": 0,
                "resources": {"gpus": 1},
                "autoscaling": {"minReplicas": 0, "maxReplicas": 2},
            },
        },
    )
    for uid, code in ((external, "server_not_scalable"), (on_demand, "server_autoscaled")):
        refused = alice.post(f"/scale/{uid}", json={"replicas": 1})
        assert refused.status_code == 409, refused.text
        assert error_code(refused) == code
    assert "between 0 and 2" in alice.post(f"/scale/{on_demand}", json={"replicas": 1}).text
    wait_for(
        lambda: alice.get(f"/status/{on_demand}").json()["state"] == "sleeping",
        timeout=60,
        what="the autoscaled server asleep",
    )

    assert alice.delete(f"/stop/{sid}").status_code == 200
    stopping = alice.post(f"/scale/{sid}", json={"replicas": 1})
    assert stopping.status_code in (404, 409), stopping.text  # being deleted, or gone


def test_a_scale_is_held_to_the_owner_s_contract_by_the_decision_and_the_webhook(
    crds: KubeCluster,
    gateway_kube: str,
    namespace: str,
    kube_api: k8s.ApiClient,
    contract_with_webhook: RunningContract,
    model_store: ModelStore,
    start_gateway: Callable[..., RunningService],
    as_user: Callable[..., httpx.Client],
) -> None:
    contracts = contract_with_webhook.service
    admin = as_user(contracts, "root", roles=("admin",))
    limits = {"max_replicas": 2, "max_gpus": 8, "models": ["Tiny-ST", "tiny-st"]}
    assert admin.put("/contracts/user/alice", json=limits).status_code == 200
    env = {
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_DOWNLOAD_URL": model_store.url,
        "GATEWAY_NAMESPACE": namespace,
    }
    deciding = start_gateway(**env, GATEWAY_CONTRACT_URL=contracts.url)
    webhook_only = start_gateway(**env)  # held by the webhook alone

    served = as_user(deciding, "alice").post("/serve", json=SERVE)
    assert served.status_code == 201, served.text
    sid, name = served.json()["server_id"], served.json()["name"]
    for gateway in (deciding, webhook_only):
        refused = as_user(gateway, "alice").post(f"/scale/{sid}", json={"replicas": 3})
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "max_replicas_exceeded"
        assert "over the limit of 2" in error["message"]
    assert spec_replicas(kube_api, namespace, name) == 1

    # The gateway acts for the server's owner: an admin's scale of alice's server is
    # allowed by the decision (admins are not limited) but held to her contract by the
    # webhook, which decides for her.
    over = as_user(deciding, "root", roles=("admin",)).post(f"/scale/{sid}", json={"replicas": 3})
    assert over.status_code == 403, over.text
    assert error_code(over) == "max_replicas_exceeded"

    within = as_user(webhook_only, "alice").post(f"/scale/{sid}", json={"replicas": 2})
    assert within.status_code == 200, within.text
    assert spec_replicas(kube_api, namespace, name) == 2
    assert as_user(deciding, "alice").delete(f"/stop/{sid}").status_code == 200


def test_a_scale_is_decided_for_the_server_s_team_not_the_caller_s_first(
    crds: KubeCluster,
    gateway_kube: str,
    namespace: str,
    kube_api: k8s.ApiClient,
    contract_with_webhook: RunningContract,
    model_store: ModelStore,
    start_gateway: Callable[..., RunningService],
    as_user: Callable[..., httpx.Client],
) -> None:
    """Dora is in two teams: a scale of her team `roomy`'s server is judged against
    roomy's contract, as the webhook judges it, not against `tight`, her first team."""
    contracts = contract_with_webhook.service
    admin = as_user(contracts, "root", roles=("admin",))
    models = ["Tiny-ST", "tiny-st"]
    assert admin.put("/contracts/team/tight", json={"max_replicas": 1, "models": models})
    assert admin.put("/contracts/team/roomy", json={"max_replicas": 4, "models": models})
    gateway = start_gateway(
        GATEWAY_KUBECONFIG=gateway_kube,
        GATEWAY_DOWNLOAD_URL=model_store.url,
        GATEWAY_NAMESPACE=namespace,
        GATEWAY_CONTRACT_URL=contracts.url,
    )
    dora = as_user(gateway, "dora", teams=("tight", "roomy"))
    served = dora.post("/serve", json={**SERVE, "team": "roomy"})
    assert served.status_code == 201, served.text
    sid, name = served.json()["server_id"], served.json()["name"]

    scaled = dora.post(f"/scale/{sid}", json={"replicas": 3})
    assert scaled.status_code == 200, scaled.text
    assert spec_replicas(kube_api, namespace, name) == 3
    over = dora.post(f"/scale/{sid}", json={"replicas": 5})  # roomy's own limit holds
    assert over.status_code == 403, over.text
    assert error_code(over) == "max_replicas_exceeded"
    assert dora.delete(f"/stop/{sid}").status_code == 200
