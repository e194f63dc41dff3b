"""POST /serve, GET /status, DELETE /stop against the real control plane (with the operator),
the real download service's records and the real contract service, decisions and webhook."""

from __future__ import annotations

import contextlib
import time
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


def operator_status(
    client: httpx.Client, server_id: str, wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """GET /status/{server_id} once the operator has written a status that `wanted` accepts;
    if none comes within a minute, the failure shows the last one (message and conditions)."""
    last: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last = client.get(f"/status/{server_id}").json()
        if last.get("message") != "waiting for the operator" and wanted(last):
            return last
        time.sleep(0.25)
    raise AssertionError(
        f"the operator's status of {server_id} within 60 s: last {described(last)} ({last!r})"
    )


def described(status: dict[str, Any]) -> str:
    """A GET /status answer's phase, message and conditions, for an assertion's message (a
    string: pytest shortens the repr of anything else)."""
    conditions = [
        f"{c['type']}={c['status']} {c['reason']}: {c['message']}"
        for c in status.get("conditions") or []
    ]
    return f"{status.get('status')}: {status.get('message')}; conditions {conditions}"


def condition(status: dict[str, Any], kind: str) -> tuple[str, str] | None:
    """(status, reason) of the condition `kind` in a GET /status answer."""
    found = [c for c in status.get("conditions") or [] if c["type"] == kind]
    return (found[0]["status"], found[0]["reason"]) if found else None


def server_logs(kube_api: k8s.ApiClient, namespace: str, pod: str) -> str:
    """The server container's log, this run's and the one before (what `kubectl logs` and
    `kubectl logs --previous` show): between two runs of a crashing server either may be
    the one that holds the crash."""
    core = k8s.CoreV1Api(kube_api)
    runs = [core.read_namespaced_pod_log(pod, namespace, container="server")]
    with contextlib.suppress(ApiException):  # no previous run yet
        runs.append(core.read_namespaced_pod_log(pod, namespace, container="server", previous=True))
    return "\n".join(str(run) for run in runs)


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

    # The status is the operator's, read from the ModelServe. Bob's server runs on pods that
    # KWOK plays (vLLM is not run here): it is on its way, or ready, or waits for a GPU.
    bobs_status = operator_status(bob, bobs["server_id"], lambda _: True)
    assert bobs_status["status"] in ("Pending", "Deploying", "Ready"), described(bobs_status)
    # Alice's is llama.cpp, whose pods the test bed really runs: llama-server loads the
    # weights fetched from the store, and Tiny-Chat's are a GGUF magic and 4 KiB of zeros
    # (model_store). So the fetch succeeds, the server exits at once, and the operator's
    # verdict, a second or two after its first status, is Failed with the crash loop as the
    # reason: the phase the gateway must then report, whatever the machine's load.
    status = operator_status(alice, mine["server_id"], lambda status: status["status"] == "Failed")
    assert status["route"] == f"/{mine['server_id']}/", described(status)
    assert "server: CrashLoopBackOff" in status["message"], described(status)
    assert condition(status, "ModelAvailable") == ("True", "Fetched"), described(status)
    assert condition(status, "Ready") == ("False", "Failed"), described(status)
    operators = get_modelserve(kube_api, namespace, mine["name"])
    assert operators is not None
    pods = k8s.CoreV1Api(kube_api).list_namespaced_pod(
        namespace, label_selector=operators["status"]["selector"]
    )
    crashed = [
        pod.metadata.name
        for pod in pods.items
        for server in pod.status.container_statuses or []
        if server.name == "server" and server.restart_count
    ]
    assert crashed, str([pod.status.to_dict() for pod in pods.items])
    logs = server_logs(kube_api, namespace, crashed[0])
    assert "failed to load model" in logs, logs[-2000:]

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
