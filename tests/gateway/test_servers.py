"""POST /serve, GET /status, DELETE /stop against the real control plane (with the operator),
the real download service's records and the real contract service, decisions and webhook."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelserve.common.modelserve import GROUP, OWNER_LABEL, PLURAL, TEAM_LABEL, VERSION
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningContract, RunningOperator, RunningService
from modelserve.testbed.polling import wait_for

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.gateway.conftest import ModelStore

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio]


def get_modelserve(kube_api: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = k8s.CustomObjectsApi(kube_api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


def in_namespace(servers: list[dict[str, Any]], namespace: str) -> set[str]:
    return {server["name"] for server in servers if server["namespace"] == namespace}


def test_users_serve_see_and_stop_their_own_servers_and_admins_all(
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
        GATEWAY_INGRESS_URL="http://localhost:8080",
    )
    alice, bob = as_user(gateway, "alice", teams=("nlp",)), as_user(gateway, "bob")
    root = as_user(gateway, "root", roles=("admin",))

    served = alice.post(
        "/serve",
        json={"model_uuid": "tiny-chat", "replicas": 2, "runtime_params": "--ctx-size 2048"},
    )
    assert served.status_code == 201, served.text
    mine = served.json()
    ms = get_modelserve(kube_api, namespace, mine["name"])
    assert ms is not None
    assert mine["server_id"] == ms["metadata"]["uid"]
    assert mine["namespace"] == namespace
    assert mine["endpoint"] == f"http://localhost:8080/{mine['server_id']}/v1"
    assert ms["metadata"]["labels"] == {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}
    assert ms["spec"]["runtime"] == "llamacpp"
    assert ms["spec"]["replicas"] == 2
    assert ms["spec"]["args"] == ["--ctx-size", "2048"]
    model = ms["spec"]["model"]
    assert model["uri"] == model_store.gguf["uri"]
    assert (model["modelId"], model["format"], model["servedName"]) == (
        "tiny-chat",
        "gguf",
        "Tiny-Chat",
    )

    theirs = bob.post("/serve", json={"model_name": "Tiny-ST", "gpus": 1})
    assert theirs.status_code == 201, theirs.text
    bobs = theirs.json()
    assert (bobs["runtime"], bobs["model"], bobs["owner"]) == ("vllm", "Tiny-ST", "bob")

    for unknown in ({"model_uuid": "no-such-model"}, {"model_name": "No such model"}):
        missing = alice.post("/serve", json=unknown)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"
    outsider = alice.post("/serve", json={"model_uuid": "tiny-chat", "team": "ops"})
    assert outsider.json()["error"]["code"] == "team_not_member"
    # A user name no label can hold owns no server and can make none.
    mailed = as_user(gateway, "carol@example.com")
    assert mailed.get("/status").json() == []
    unlabelled = mailed.post("/serve", json={"model_uuid": "tiny-chat"})
    assert unlabelled.status_code == 422
    assert unlabelled.json()["error"]["code"] == "invalid_label_value"

    assert in_namespace(alice.get("/status").json(), namespace) == {mine["name"]}
    assert in_namespace(bob.get("/status").json(), namespace) == {bobs["name"]}
    assert in_namespace(root.get("/status").json(), namespace) == {mine["name"], bobs["name"]}
    # By page, oldest first, with the total: a user of this test alone, with two servers
    # (an admin's list holds other tests' servers, which come and go meanwhile).
    pager = as_user(gateway, f"pager-{uuid.uuid4().hex[:8]}")
    made = [pager.post("/serve", json={"model_uuid": "tiny-st"}) for _ in range(2)]
    assert [answer.status_code for answer in made] == [201, 201], [a.text for a in made]
    everything = pager.get("/status")
    assert everything.headers["X-Total-Count"] == "2"
    oldest_first = [server["server_id"] for server in everything.json()]
    assert sorted(oldest_first) == sorted(answer.json()["server_id"] for answer in made)
    pages = [pager.get("/status", params={"limit": 1, "offset": n}) for n in range(3)]
    assert [[s["server_id"] for s in page.json()] for page in pages] == [
        [oldest_first[0]],
        [oldest_first[1]],
        [],
    ]
    assert {page.headers["X-Total-Count"] for page in pages} == {"2"}
    assert pager.get("/status", params={"limit": 0}).status_code == 422
    for server_id in oldest_first:
        assert pager.delete(f"/stop/{server_id}").status_code == 200

    # Someone else's server is not there for you: not to read, not to stop.
    for response in (
        alice.get(f"/status/{bobs['server_id']}"),
        bob.delete(f"/stop/{mine['server_id']}"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "server_not_found"
    assert get_modelserve(kube_api, namespace, mine["name"]) is not None

    # The status is the operator's, read from the ModelServe.
    def reported() -> dict[str, Any] | None:
        status: dict[str, Any] = alice.get(f"/status/{mine['server_id']}").json()
        return status if status["message"] != "waiting for the operator" else None

    status = wait_for(reported, timeout=60, what="the operator's status of alice's server")
    assert status["route"] == f"/{mine['server_id']}/"
    assert status["status"] in ("Pending", "Deploying", "Ready")

    stopped = alice.delete(f"/stop/{mine['server_id']}")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["server_id"] == mine["server_id"]
    wait_for(
        lambda: get_modelserve(kube_api, namespace, mine["name"]) is None,
        timeout=30,
        what="alice's ModelServe to be deleted",
    )
    assert alice.get(f"/status/{mine['server_id']}").status_code == 404
    assert root.delete(f"/stop/{bobs['server_id']}").status_code == 200
    wait_for(
        lambda: get_modelserve(kube_api, namespace, bobs["name"]) is None,
        timeout=30,
        what="bob's ModelServe to be deleted",
    )


def test_the_contract_refuses_through_its_decision_and_through_its_webhook(
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
    root = as_user(contracts, "root", roles=("admin",))
    # The webhook holds the allowlist to the model id in the uri (tiny-chat) as well.
    limits = {"max_replicas": 1, "models": ["Tiny-Chat", "tiny-chat"]}
    assert root.put("/contracts/user/alice", json=limits).status_code == 200
    env = {
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_DOWNLOAD_URL": model_store.url,
        "GATEWAY_NAMESPACE": namespace,
    }
    deciding = start_gateway(**env, GATEWAY_CONTRACT_URL=contracts.url)
    # Without a contract service to ask, the gateway is still held by the webhook.
    webhook_only = start_gateway(**env)

    for gateway in (deciding, webhook_only):
        alice = as_user(gateway, "alice")
        refused = alice.post("/serve", json={"model_name": "Tiny-Chat", "replicas": 2})
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "max_replicas_exceeded"
        assert error["message"] == "2 replicas is over the limit of 1 per server for user alice"
    assert crds.get_json("ms", "-n", namespace)["items"] == []

    alice = as_user(deciding, "alice")
    outside = alice.post("/serve", json={"model_name": "Tiny-ST", "gpus": 1})
    assert outside.status_code == 403
    assert outside.json()["error"]["code"] == "model_not_allowed"

    served = alice.post("/serve", json={"model_name": "Tiny-Chat", "replicas": 1})
    assert served.status_code == 201, served.text
    ms = get_modelserve(kube_api, namespace, served.json()["name"])
    assert ms is not None
    assert ms["metadata"]["labels"][OWNER_LABEL] == "alice"
