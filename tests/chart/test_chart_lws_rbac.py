"""The operator's access to LeaderWorkerSets as the chart grants it (issue 23): one rule with
the verbs the operator uses on its own children, and nothing wider. Then what the API server
makes of it, on a cluster of this module's own (the session's cluster keeps no
LeaderWorkerSet CRD, which other tests count on): with LeaderWorkerSet's CRD the operator's
account applies, lists, watches and deletes a LeaderWorkerSet through the operator's own
client and may do nothing more to it; without the CRD its apply is refused with 404, not
403. The install's notes name the missing API. And the fence of each group, which the chart
leaves to the operator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from modelserve.common.modelserve import ModelServe
from modelserve.operator.cluster import Cluster, ClusterError
from modelserve.operator.multinode import LWS_API_VERSION, LWS_KIND, build_leader_worker_set
from modelserve.operator.settings import OperatorSettings
from modelserve.testbed.gobuild import binary
from modelserve.testbed.helm import CHART, Helm, find
from modelserve.testbed.kube import FakeNode, KubeCluster, start_cluster
from modelserve.testbed.lws import LWS_CRD, LWS_GROUP, install_lws_crd
from modelserve.testbed.platform import install_crds
from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import run

RELEASE = "modelserve"
NAMESPACE = "modelserve"
SERVERS = "team-a"
OPERATOR = f"{RELEASE}-operator"
ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{OPERATOR}"
LWS_RESOURCE = "leaderworkersets"
# What the operator does with a LeaderWorkerSet, as with a Deployment: server-side apply
# (create, patch), list and watch for status and drift, delete when no longer wanted.
VERBS = ["get", "list", "watch", "create", "patch", "delete"]
LWS_RULE = {"apiGroups": [LWS_GROUP], "resources": [LWS_RESOURCE], "verbs": VERBS}
# The API server's answer to a path of a group it does not serve: a plain-text 404 (not a
# Status object), as for any unknown URL.
NOT_FOUND = "404 page not found"
NOTE = "LeaderWorkerSet (leaderworkerset.x-k8s.io/v1) was not found in this cluster"
INSTALL = (
    "kubectl apply --server-side -f "
    "https://github.com/kubernetes-sigs/lws/releases/download/v0.7.0/manifests.yaml"
)
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
SETTINGS = OperatorSettings(
    model_store_endpoint="minio.platform:9000",
    model_store_access_key="ak",  # type: ignore[arg-type]  # pydantic turns str into SecretStr
    model_store_secret_key="sk",  # type: ignore[arg-type]
)

Grant = tuple[str, str, str]  # (API group, resource, verb)


def _grants(rules: list[dict[str, Any]]) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
    }


# --- as rendered -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(offline_helm: Helm) -> list[dict[str, Any]]:
    return offline_helm.template(RELEASE, NAMESPACE)


def test_the_operator_may_manage_leaderworkersets_and_nothing_wider(
    rendered: list[dict[str, Any]],
) -> None:
    rules = find(rendered, "ClusterRole", OPERATOR)["rules"]
    touching = [
        rule
        for rule in rules
        if LWS_GROUP in rule["apiGroups"]
        or any(resource.split("/")[0] == LWS_RESOURCE for resource in rule["resources"])
    ]
    assert touching == [LWS_RULE]
    grants = _grants(rules)
    # No wildcard lets anything else in.
    assert not [grant for grant in grants if "*" in grant]
    # Not the status, the scale subresource or update (PUT): applies are patches.
    assert {(r, v) for g, r, v in grants if g == LWS_GROUP} == {(LWS_RESOURCE, v) for v in VERBS}
    # Nothing on what LeaderWorkerSet's own controller makes of it: StatefulSets (and their
    # revisions) are its; pods stay as they were (read, and the deletion-cost patch).
    assert {r for g, r, _ in grants if g == "apps"} == {"deployments"}
    assert {v for g, r, v in grants if (g, r) == ("", "pods")} == {"get", "list", "watch", "patch"}
    assert {r for _, r, _ in grants if r.startswith("pods")} == {"pods"}
    # The namespaced Roles (Secrets only) grant nothing of it either.
    for role in rendered:
        if role["kind"] == "Role" and role["metadata"]["name"].startswith(OPERATOR):
            assert not [g for g in _grants(role["rules"]) if g[0] == LWS_GROUP or "*" in g]


def test_the_operator_s_lws_rule_is_its_deploy_file_s(rendered: list[dict[str, Any]]) -> None:
    """One source: the chart reads operator/deploy/rbac.yaml, which the test bed applies
    (tests/chart/test_chart_render.py compares every rule)."""
    deploy = Path(__file__).resolve().parents[2] / "operator" / "deploy" / "rbac.yaml"
    (role,) = [
        doc
        for doc in yaml.safe_load_all(deploy.read_text())
        if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == "modelserve-operator"
    ]
    assert LWS_RULE in role["rules"]
    assert find(rendered, "ClusterRole", OPERATOR)["rules"] == role["rules"]


def _notes(helm: Helm, *args: str) -> str:
    """The notes of an install into `helm`'s cluster. A client-side dry run creates
    nothing, but helm still asks the cluster which APIs it serves (`.Capabilities`). A
    release of its own (no clash with the RBAC applied here) and no server namespaces (no
    clash with those that exist)."""
    out = helm(
        "install",
        "notes",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        "--set-json",
        "serverNamespaces=[]",
        *args,
    )
    return out[out.index("NOTES:") :]


NETWORK_POLICY_RULE = {
    "apiGroups": ["networking.k8s.io"],
    "resources": ["networkpolicies"],
    "verbs": VERBS,
}


def test_groups_are_fenced_by_the_operator_where_the_chart_makes_policies(
    offline_helm: Helm, rendered: list[dict[str, Any]]
) -> None:
    """A group's workers join the leader's Ray head (6379, no authentication), and Ray and
    NCCL connect both ways on ports of their choosing. A chart policy cannot name "the pods
    of the same server", so it opens none of that: the operator makes one NetworkPolicy
    per such server (its builder's tests say what it selects), with the same verbs as on
    its other children, wherever the chart makes the other policies."""
    assert NETWORK_POLICY_RULE in find(rendered, "ClusterRole", OPERATOR)["rules"]
    config = find(rendered, "ConfigMap", OPERATOR)["data"]
    assert config["OPERATOR_GROUP_NETWORK_POLICY"] == "true"
    for policy in rendered:
        if policy["kind"] != "NetworkPolicy":
            continue
        for rule in policy["spec"]["ingress"]:
            assert rule.get("ports"), f"{policy['metadata']['name']} opens every port"
    # Without the chart's policies, a policy of the operator's alone would shut the gateway
    # out of those pods: no fence then.
    bare = offline_helm.template(RELEASE, NAMESPACE, {"networkPolicy": {"enabled": False}})
    assert not [obj for obj in bare if obj["kind"] == "NetworkPolicy"]
    assert find(bare, "ConfigMap", OPERATOR)["data"]["OPERATOR_GROUP_NETWORK_POLICY"] == "false"


# --- on the API server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lws_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cpu = FakeNode("cpu-0", cpu="8", memory="16Gi")
    cluster = start_cluster(tmp_path_factory.mktemp("lws-rbac"), nodes=(cpu,), run_pods=False)
    try:
        install_crds(cluster)  # the chart's other kinds (ModelServe, Traefik's), for helm
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def operator_kubeconfig(lws_cluster: KubeCluster, offline_helm: Helm) -> Path:
    """The chart's accounts and RBAC (ModelServes in SERVERS) applied; a kubeconfig that
    acts as the operator's service account."""
    for namespace in (NAMESPACE, SERVERS):
        lws_cluster.kubectl("create", "namespace", namespace)
    objects = offline_helm.template(RELEASE, NAMESPACE, {"serverNamespaces": [SERVERS]})
    kept = [obj for obj in objects if obj["kind"] in RBAC_KINDS]
    lws_cluster.kubectl("apply", stdin=yaml.safe_dump_all(kept))
    return lws_cluster.service_account_kubeconfig(NAMESPACE, OPERATOR)


@pytest.fixture(scope="module")
def cluster_helm(
    helm: Path, lws_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Helm:
    return Helm(helm, tmp_path_factory.mktemp("helm-lws"), lws_cluster.kubeconfig)


def _served(cluster: KubeCluster) -> bool:
    """Whether the API server's discovery lists LeaderWorkerSet's group."""
    return bool(cluster.kubectl("api-resources", f"--api-group={LWS_GROUP}", "-o", "name").strip())


def _leader_worker_set() -> dict[str, Any]:
    """The operator's LeaderWorkerSet for docs/examples/vllm-multinode.yaml in SERVERS,
    without its owner reference (no ModelServe here: the garbage collector would delete
    an object whose owner does not exist)."""
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "vllm-multinode.yaml"
    body = yaml.safe_load(example.read_text())
    body["metadata"].update(namespace=SERVERS, uid="uid-1")
    obj = build_leader_worker_set(ModelServe.from_body(body), SETTINGS)
    obj["metadata"].pop("ownerReferences")
    return obj


def _as_operator(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, calls: Any) -> Any:
    """Run `calls(cluster)` with the operator's own API client, logged in from
    `kubeconfig` (kopf reads $KUBECONFIG outside a pod)."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))

    async def main() -> Any:
        cluster = Cluster(kopf.OperatorSettings(), 2)
        try:
            return await calls(cluster)
        finally:
            await cluster.close()

    return asyncio.run(main())


def _allowed(cluster: KubeCluster, verb: str, resource: str, group: str, **more: str) -> bool:
    """Whether the API server lets the operator's account do this in SERVERS (a
    SubjectAccessReview: the decision a real request gets)."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": ACCOUNT,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": {
                "verb": verb,
                "group": group,
                "resource": resource,
                "namespace": SERVERS,
                **more,
            },
        },
    }
    answer = json.loads(cluster.kubectl("create", "-o", "json", stdin=json.dumps(review)))
    return bool(answer["status"].get("allowed"))


@pytest.mark.kube
def test_without_leaderworkerset_the_operator_s_apply_is_refused_with_404(
    lws_cluster: KubeCluster,
    operator_kubeconfig: Path,
    cluster_helm: Helm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lws_cluster.kubectl("delete", "crd", LWS_CRD, "--ignore-not-found", "--wait=true")
    wait_for(lambda: not _served(lws_cluster), timeout=30, what=f"{LWS_GROUP} no longer served")
    # Allowed, so what comes back is the API server's answer about the kind, not RBAC's.
    assert _allowed(lws_cluster, "patch", LWS_RESOURCE, LWS_GROUP)

    async def apply(cluster: Cluster) -> ClusterError:
        with pytest.raises(ClusterError) as refused:
            await cluster.apply(_leader_worker_set())
        return refused.value

    error = _as_operator(operator_kubeconfig, monkeypatch, apply)
    assert error.status == 404
    assert str(error).strip() == f"apply {LWS_KIND} llama-405b: 404 {NOT_FOUND}"
    assert not error.retryable
    # helm does not find the API in this cluster either: the notes say to install it (and
    # only where the chart installs the operator).
    notes = _notes(cluster_helm)
    assert NOTE in notes and INSTALL in notes and "LeaderWorkerSetMissing" in notes
    assert NOTE not in _notes(cluster_helm, "--set", "operator.enabled=false")


@pytest.mark.kube
def test_with_leaderworkerset_the_operator_applies_watches_lists_and_deletes_only(
    lws_cluster: KubeCluster,
    operator_kubeconfig: Path,
    cluster_helm: Helm,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    install_lws_crd(lws_cluster)
    wait_for(lambda: _served(lws_cluster), timeout=30, what=f"{LWS_GROUP} served")
    wanted = _leader_worker_set()

    async def manage(cluster: Cluster) -> tuple[dict[str, Any], list[str], str, list[str]]:
        stored = await cluster.apply(wanted)  # create
        again = await cluster.apply(wanted)  # and patch: the same object, unchanged
        assert again["metadata"]["uid"] == stored["metadata"]["uid"]
        listed = await cluster.list_objects(LWS_API_VERSION, LWS_KIND, SERVERS, "")
        names = [item["metadata"]["name"] for item in listed["items"]]
        # A watch from version 0 first replays what exists.
        event = ""
        async for change in cluster.watch(LWS_API_VERSION, LWS_KIND, SERVERS, "", "0"):
            event = f"{change['type']} {change['object']['metadata']['name']}"
            break
        await cluster.delete(stored)
        after = await cluster.list_objects(LWS_API_VERSION, LWS_KIND, SERVERS, "")
        return stored, names, event, [item["metadata"]["name"] for item in after["items"]]

    stored, names, event, after = _as_operator(operator_kubeconfig, monkeypatch, manage)
    assert stored["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert names == ["llama-405b"]
    assert event == "ADDED llama-405b"
    assert after == []  # gone (no finalizer without LeaderWorkerSet's controller)

    # Nothing more: no update (PUT), no status or scale, nothing of what LWS itself makes.
    for verb, resource, group, subresource in (
        ("update", LWS_RESOURCE, LWS_GROUP, ""),
        ("patch", LWS_RESOURCE, LWS_GROUP, "status"),
        ("update", LWS_RESOURCE, LWS_GROUP, "status"),
        ("patch", LWS_RESOURCE, LWS_GROUP, "scale"),
        ("deletecollection", LWS_RESOURCE, LWS_GROUP, ""),
        ("create", "statefulsets", "apps", ""),
        ("patch", "statefulsets", "apps", ""),
        ("delete", "statefulsets", "apps", ""),
        ("get", "statefulsets", "apps", ""),
        ("create", "pods", "", ""),
        ("delete", "pods", "", ""),
    ):
        assert not _allowed(lws_cluster, verb, resource, group, subresource=subresource), (
            verb,
            resource,
            subresource,
        )
    # And a real update is refused as the review says (RBAC decides before the object is
    # looked up, so that it is gone by now changes nothing).
    stored["metadata"].pop("managedFields", None)
    path = tmp_path / "update.json"
    path.write_text(json.dumps(stored))
    kubectl = str(binary("kubectl"))
    with pytest.raises(RuntimeError, match="forbidden"):
        run([kubectl, f"--kubeconfig={operator_kubeconfig}", "replace", "-f", str(path)])
    # The notes say nothing of LeaderWorkerSet where helm finds it.
    assert NOTE not in _notes(cluster_helm)
