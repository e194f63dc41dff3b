"""A model spread over several nodes counts every GPU of its group against the limits.

One replica of a ModelServe with spec.resources.nodes is a group of that many pods, each
with spec.resources.gpus GPUs: `max_gpus` counts gpus x nodes per replica, in the decision
and in the ledger that later decisions sum; `max_replicas` counts replicas (groups), not
pods. Decided by the real contract service on PostgreSQL, through POST /decide as the
gateway asks it, and through the admission webhook that the test bed's real API server
asks at `kubectl apply` and `kubectl scale`.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from modelserve.common.modelserve import GROUP, KIND, VERSION
from modelserve.contract.inventory import server_of
from modelserve.contract.policy import Resource, with_recorded
from modelserve.contract.tables import Server
from modelserve.testbed.gobuild import binary
from modelserve.testbed.polling import wait_for

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.contract.conftest import AdmissionBed

pytestmark = pytest.mark.postgres

Client = Callable[..., httpx.Client]
Namespaces = Callable[..., str]
DENIED = "denied the request:"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- POST /decide, as the gateway decides before it writes a ModelServe -----------------


class Gateway:
    """The gateway deciding for `subject` of `team` (a service token; recorded for real)."""

    def __init__(self, client: Client, subject: str, team: str) -> None:
        self._client = client("service:gateway", roles=("service",))
        self._principal = {"subject": subject, "teams": [team], "roles": []}

    def decide(self, action: str, **resource: Any) -> dict[str, Any]:
        body = {"principal": self._principal, "action": action, "resource": resource}
        response = self._client.post("/decide", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def serve(self, name: str, **resource: Any) -> dict[str, Any]:
        model = {"namespace": "default", "name": name, "model": "llama", "runtime": "vllm"}
        return self.decide("serve", **{**model, **resource})


def team_contract(client: Client, team: str, **limits: Any) -> None:
    answer = client("root", roles=("admin",)).put(f"/contracts/team/{team}", json=limits)
    assert answer.status_code == 200, answer.text


def test_replicas_of_a_group_count_every_gpu_of_every_pod(client: Client, user: str) -> None:
    """2 replicas of 2 nodes x 4 GPUs hold 16 GPUs: over a limit of 15, within one of 16,
    and recorded as 16 for the decisions after it."""
    tight, roomy = unique("tight"), unique("roomy")
    team_contract(client, tight, max_gpus=15)
    team_contract(client, roomy, max_gpus=16)

    refused = Gateway(client, user, tight).serve(f"{user}-a", gpus=4, nodes=2, replicas=2)
    assert refused == {
        "allowed": False,
        "reason": "max_gpus_exceeded",
        "message": f"team {tight} would use 16 GPUs (0 already, 16 more: 2 replicas of 2 "
        "nodes x 4 GPUs); the limit is 15",
        "limit": 15,
    }
    gateway = Gateway(client, user, roomy)
    assert gateway.serve(f"{user}-b", gpus=4, nodes=2, replicas=2)["allowed"]
    # Decided again (an update), the same server does not count twice.
    assert gateway.serve(f"{user}-b", gpus=4, nodes=2, replicas=2)["allowed"]
    more = gateway.serve(f"{user}-c", gpus=1)
    assert more["reason"] == "max_gpus_exceeded"
    assert (
        more["message"] == f"team {roomy} would use 17 GPUs (16 already, 1 more); the limit is 16"
    )


def test_a_scale_of_a_group_counts_the_gpus_recorded_for_it(client: Client, user: str) -> None:
    """A scale names only the replicas: each counts the whole group the ledger recorded."""
    team = unique("scale")
    team_contract(client, team, max_gpus=16)
    gateway = Gateway(client, user, team)
    assert gateway.serve(f"{user}-g", gpus=4, nodes=2)["allowed"]

    assert gateway.decide("scale", namespace="default", name=f"{user}-g", replicas=2)["allowed"]
    over = gateway.decide("scale", namespace="default", name=f"{user}-g", replicas=3)
    assert over["reason"] == "max_gpus_exceeded"
    assert over["message"] == f"team {team} would use 24 GPUs (0 already, 24 more); the limit is 16"


def test_a_single_node_server_counts_as_before(client: Client, user: str) -> None:
    team = unique("single")
    team_contract(client, team, max_gpus=16)
    gateway = Gateway(client, user, team)
    assert gateway.serve(f"{user}-a", gpus=4, replicas=2)["allowed"]
    assert gateway.serve(f"{user}-b", gpus=8)["allowed"]
    over = gateway.serve(f"{user}-c", gpus=1)
    assert over["message"] == f"team {team} would use 17 GPUs (16 already, 1 more); the limit is 16"


def test_the_replica_limit_counts_groups_not_pods(client: Client, user: str) -> None:
    team = unique("groups")
    team_contract(client, team, max_replicas=2)
    gateway = Gateway(client, user, team)
    # 2 groups of 2 pods: 4 pods, 2 replicas.
    assert gateway.serve(f"{user}-a", gpus=8, nodes=2, replicas=2)["allowed"]
    over = gateway.serve(f"{user}-b", gpus=8, nodes=2, replicas=3)
    assert over["reason"] == "max_replicas_exceeded"
    assert over["message"] == (
        f"3 replicas (each a group of 2 nodes) is over the limit of 2 per server for team {team}"
    )


def test_a_group_is_2_to_16_pods_of_gpus_that_fit_the_ledger(client: Client, user: str) -> None:
    gateway = client("service:gateway", roles=("service",))
    for nodes, gpus in ((0, 8), (17, 8), (16, 2**31 // 16)):
        resource = {"namespace": "default", "name": f"{user}-x", "gpus": gpus, "nodes": nodes}
        answer = gateway.post(
            "/decide",
            json={"principal": {"subject": user}, "action": "serve", "resource": resource},
        )
        assert answer.status_code == 422, (nodes, gpus, answer.text)


def test_the_ledger_holds_a_replicas_whole_group_and_a_scale_counts_it_once() -> None:
    """Pure: the inventory's row of a 2 x 8 ModelServe, and a scale completed from it."""
    body = group("g", gpus=8, nodes=2)
    body["metadata"].update(namespace="ns", uid="u-1")
    row = server_of(body)
    assert row is not None and (row.replicas, row.gpus) == (1, 16)
    recorded = Server(
        namespace="ns", name="g", owner="o", replicas=1, gpus=16, model="m", runtime="vllm"
    )
    # A scale names no GPUs: the recorded 16 per replica, not 16 per pod of a group again.
    scale = with_recorded(Resource(namespace="ns", name="g", replicas=2, nodes=2), recorded)
    assert (scale.gpus, scale.nodes) == (16, 1)


# --- kubectl, judged by the admission webhook ---------------------------------------------


def group(name: str, *, gpus: int, nodes: int | None) -> dict[str, Any]:
    """A vLLM ModelServe of `nodes` pods per replica of `gpus` GPUs each (None: one pod)."""
    resources: dict[str, Any] = {"gpus": gpus}
    if nodes is not None:
        resources["nodes"] = nodes
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "runtime": "vllm",
            "model": {
                "uri": "s3://inference-models/models/meta-llama-3.1-405b/",
                "format": "safetensors",
                "servedName": "meta-llama/Meta-Llama-3.1-405B",
            },
            "replicas": 1,
            "resources": resources,
        },
    }


def kubectl(kubeconfig: Path, *args: str, manifest: dict[str, Any] | None = None) -> str:
    """kubectl as the kubeconfig's person: "" when it went through, else the webhook's
    denial (its reason code and message) on one line."""
    argv = [str(binary("kubectl")), f"--kubeconfig={kubeconfig}", *args]
    result = subprocess.run(
        [*argv, "-f", "-"] if manifest is not None else argv,
        input=json.dumps(manifest) if manifest is not None else None,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode == 0:
        return ""
    text = " ".join(result.stderr.split())  # kubectl wraps long lines
    assert DENIED in text, text
    return text.split(DENIED, 1)[1].strip()


def member(admission: AdmissionBed, namespace: str, max_gpus: int) -> tuple[Path, str]:
    """A person of a new team whose contract sets `max_gpus`: their kubeconfig and team.
    The mutating webhook labels their ModelServes with that team."""
    who, team = unique("member"), unique("team")
    admission.put_contract(who, namespaces=[namespace])
    answer = httpx.put(
        f"{admission.service.url}/contracts/team/{team}",
        json={"max_gpus": max_gpus},
        headers={"Authorization": f"Bearer {admission.admin_token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return admission.kubeconfig(who, teams=(team,)), team


def stored(admission: AdmissionBed, namespace: str) -> dict[str, int]:
    items = admission.kube.get_json("ms", "-n", namespace)["items"]
    return {item["metadata"]["name"]: item["spec"]["replicas"] for item in items}


def when_recorded(kubeconfig: Path, namespace: str, manifest: dict[str, Any]) -> str:
    """The denial of `manifest` once the ledger holds what was applied before (the
    inventory's watch records it a moment after the API server stored it): asked with
    server-side dry runs, which store nothing."""
    return wait_for(
        lambda: kubectl(
            kubeconfig, "apply", "--dry-run=server", "-n", namespace, manifest=manifest
        ),
        timeout=30,
        what="the ledger to count the ModelServe applied before",
    )


@pytest.mark.kube
def test_a_team_of_16_gpus_applies_one_2_node_group_of_8_gpus(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    namespace = enforced_namespace()
    person, team = member(admission, namespace, max_gpus=16)
    first, second = group("first", gpus=8, nodes=2), group("second", gpus=8, nodes=2)

    assert kubectl(person, "apply", "-n", namespace, manifest=first) == ""
    expected = (
        f"[max_gpus_exceeded] team {team} would use 32 GPUs (16 already, 16 more: 1 replica "
        "of 2 nodes x 8 GPUs); the limit is 16"
    )
    assert when_recorded(person, namespace, second) == expected
    assert kubectl(person, "apply", "-n", namespace, manifest=second) == expected
    # A second replica is a second group: 32 GPUs.
    grown = kubectl(person, "scale", "ms/first", "--replicas=2", "-n", namespace)
    assert grown == (
        f"[max_gpus_exceeded] team {team} would use 32 GPUs (0 already, 32 more); the limit is 16"
    )
    assert stored(admission, namespace) == {"first": 1}


@pytest.mark.kube
def test_a_team_of_12_gpus_cannot_apply_a_2_node_group_of_8_gpus(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    namespace = enforced_namespace()
    person, team = member(admission, namespace, max_gpus=12)
    refused = kubectl(person, "apply", "-n", namespace, manifest=group("big", gpus=8, nodes=2))
    assert refused == (
        f"[max_gpus_exceeded] team {team} would use 16 GPUs (0 already, 16 more: 1 replica "
        "of 2 nodes x 8 GPUs); the limit is 12"
    )
    # The same GPUs on one node per replica, 8, fit.
    assert (
        kubectl(person, "apply", "-n", namespace, manifest=group("one", gpus=8, nodes=None)) == ""
    )
    assert stored(admission, namespace) == {"one": 1}


@pytest.mark.kube
def test_single_node_modelserves_count_as_before(
    admission: AdmissionBed, enforced_namespace: Namespaces
) -> None:
    namespace = enforced_namespace()
    person, team = member(admission, namespace, max_gpus=16)
    for name in ("a", "b"):
        manifest = group(name, gpus=8, nodes=None)
        if name == "b":
            assert when_recorded(person, namespace, group("probe", gpus=9, nodes=None))
        assert kubectl(person, "apply", "-n", namespace, manifest=manifest) == ""
    third = when_recorded(person, namespace, group("c", gpus=8, nodes=None))
    assert third == (
        f"[max_gpus_exceeded] team {team} would use 24 GPUs (16 already, 8 more); the limit is 16"
    )
    assert stored(admission, namespace) == {"a": 1, "b": 1}
