"""POST /serve with `nodes` against the real control plane, the real download service's
records and the real contract service (its decisions, PostgreSQL ledger and webhook): the
contract counts every GPU of a group, and the ModelServe made says spec.resources.nodes.

No operator runs here: the session's cluster has no LeaderWorkerSet, so such a server
would only be refused with LeaderWorkerSetMissing (tests/operator covers that)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from kubernetes import client as k8s

from modelserve.common.modelserve import GROUP, PLURAL, VERSION
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningContract, RunningService
from modelserve.testbed.polling import wait_for

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.gateway.conftest import ModelStore

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio]

TWO_NODES = {"model_name": "Tiny-ST", "nodes": 2, "gpus": 8}


def modelserves(kube_api: k8s.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    """The namespace's ModelServes by name."""
    found = k8s.CustomObjectsApi(kube_api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )
    return {item["metadata"]["name"]: item for item in found["items"]}


def test_a_team_s_gpu_limit_counts_the_whole_group_and_the_spec_says_nodes(
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
    for team, most in (("tight", 12), ("roomy", 16)):
        put = admin.put(f"/contracts/team/{team}", json={"max_gpus": most})
        assert put.status_code == 200, put.text
    env = {
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_DOWNLOAD_URL": model_store.url,
        "GATEWAY_NAMESPACE": namespace,
    }
    deciding = start_gateway(**env, GATEWAY_CONTRACT_URL=contracts.url)
    webhook_only = start_gateway(**env)  # held by the webhook alone

    # 2 nodes x 8 GPUs is 16 GPUs a replica: over tight's 12, though 8 would fit.
    for gateway in (deciding, webhook_only):
        alice = as_user(gateway, "alice", teams=("tight", "roomy"))
        refused = alice.post("/serve", json={**TWO_NODES, "team": "tight"})
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "max_gpus_exceeded"
        assert error["message"] == (
            "team tight would use 16 GPUs (0 already, 16 more: 1 replica of 2 nodes x 8 "
            "GPUs); the limit is 12"
        )
    assert modelserves(kube_api, namespace) == {}

    alice = as_user(deciding, "alice", teams=("tight", "roomy"))
    parallelism = {"tensor": 8, "pipeline": 2}
    served = alice.post("/serve", json={**TWO_NODES, "team": "roomy", "parallelism": parallelism})
    assert served.status_code == 201, served.text
    server = served.json()
    assert (server["runtime"], server["nodes"], server["team"]) == ("vllm", 2, "roomy")
    ms = modelserves(kube_api, namespace)[server["name"]]
    assert ms["spec"]["resources"] == {"gpus": 8, "nodes": 2}
    assert ms["spec"]["parallelism"] == parallelism
    shown = alice.get(f"/status/{server['server_id']}").json()
    assert (shown["nodes"], shown["replicas"]) == (2, 1)

    # The ledger holds the group's 16 GPUs: a second group does not fit roomy's 16.
    again = alice.post("/serve", json={**TWO_NODES, "team": "roomy"})
    assert again.status_code == 403, again.text
    assert again.json()["error"]["message"] == (
        "team roomy would use 32 GPUs (16 already, 16 more: 1 replica of 2 nodes x 8 "
        "GPUs); the limit is 16"
    )
    # llamacpp's gguf model cannot spread: refused before the contract is asked.
    gguf = alice.post("/serve", json={"model_name": "Tiny-Chat", "nodes": 2, "gpus": 1})
    assert gguf.status_code == 422, gguf.text
    assert gguf.json()["error"]["code"] == "nodes_need_vllm"

    assert alice.delete(f"/stop/{server['server_id']}").status_code == 200
    wait_for(
        lambda: server["name"] not in modelserves(kube_api, namespace),
        timeout=30,
        what="the group's ModelServe to be deleted",
    )
