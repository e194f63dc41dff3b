"""The node agent's DaemonSet as rendered: off by default, on GPU nodes only, non-root
unless it applies power limits (then root and privileged: the chart's one exception),
with the settings the agent accepts and the RBAC of its deploy file."""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml

from modelserve.nodeagent.settings import NodeAgentSettings
from modelserve.testbed.cache import repo_root
from modelserve.testbed.helm import CHART, Helm, find
from modelserve.testbed.kube import KubeCluster

RELEASE = "modelserve"
NAMESPACE = "modelserve"
NAME = f"{RELEASE}-nodeagent"
RBAC = repo_root() / "services" / "nodeagent" / "deploy" / "rbac.yaml"
ON = {"nodeAgent": {"enabled": True}}

Objects = list[dict[str, Any]]


def _pod(objects: Objects) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "DaemonSet", NAME)["spec"]["template"]["spec"]
    return spec


def test_off_by_default(offline_helm: Helm) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE)
    assert not [obj for obj in objects if "nodeagent" in obj["metadata"]["name"]]


def test_on_gpu_nodes_only_reading_as_non_root(offline_helm: Helm) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, ON)
    pod = _pod(objects)
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == ["modelserve-nodeagent"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # It takes no GPU from the servers: nvidia-smi sees them through the runtime.
    assert "nvidia.com/gpu" not in str(container["resources"])
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [{"key": "nvidia.com/gpu.product", "operator": "Exists"}]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]


def test_the_agent_accepts_the_settings_it_is_given(
    offline_helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("NODEAGENT_"):
            monkeypatch.delenv(name)
    (container,) = _pod(offline_helm.template(RELEASE, NAMESPACE, ON))["containers"]
    for var in container["env"]:
        if "value" in var:
            monkeypatch.setenv(var["name"], var["value"])
        else:
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
            monkeypatch.setenv(var["name"], "gpu-node-0")
    settings = NodeAgentSettings()  # type: ignore[call-arg]  # from the environment
    assert settings.node_name == "gpu-node-0" and settings.namespace == NAMESPACE
    assert (settings.interval_seconds, settings.lease_seconds) == (10, 30)
    assert settings.apply_power_limits is False
    names = {var["name"] for var in container["env"]}
    known = {f"NODEAGENT_{field.upper()}" for field in NodeAgentSettings.model_fields}
    assert {n for n in names if n.startswith("NODEAGENT_")} <= known


def test_applying_power_limits_is_the_one_root_exception(offline_helm: Helm) -> None:
    values = {"nodeAgent": {"enabled": True, "applyPowerLimits": True}}
    objects = offline_helm.template(RELEASE, NAMESPACE, values)
    pod = _pod(objects)
    assert pod["securityContext"]["runAsUser"] == 0
    (container,) = pod["containers"]
    assert container["securityContext"]["privileged"] is True
    env = {var["name"]: var.get("value") for var in container["env"]}
    assert env["NODEAGENT_APPLY_POWER_LIMITS"] == "true"
    workloads = [
        obj
        for obj in objects
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
        and obj["spec"]["template"]["spec"]["securityContext"].get("runAsNonRoot") is not True
    ]
    assert [obj["metadata"]["name"] for obj in workloads] == [NAME]


def test_rbac_is_its_deploy_file_s_in_the_release_namespace_only(offline_helm: Helm) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, ON)
    role = find(objects, "Role", NAME)
    assert role["metadata"]["namespace"] == NAMESPACE
    (deployed,) = [doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc["kind"] == "Role"]
    assert role["rules"] == deployed["rules"]
    binding = find(objects, "RoleBinding", NAME)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]
    assert not [
        obj
        for obj in objects
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding")
        and "nodeagent" in obj["metadata"]["name"]
    ]
    assert _pod(objects)["serviceAccountName"] == NAME


def test_lint_is_clean_with_the_agent(offline_helm: Helm) -> None:
    values = offline_helm.values_file(
        {"nodeAgent": {"enabled": True, "applyPowerLimits": True}}, "agent"
    )
    output = offline_helm("lint", "--strict", str(CHART), "-f", str(values))
    assert "[WARNING]" not in output and "[ERROR]" not in output


@pytest.mark.kube
def test_the_api_server_accepts_the_agent(
    cluster_helm: Helm, crds: KubeCluster, namespace: str
) -> None:
    manifest = cluster_helm(
        "template",
        f"modelserve-{namespace}",
        str(CHART),
        "--namespace",
        namespace,
        "--set-json",
        "serverNamespaces=[]",
        "--set",
        "nodeAgent.enabled=true",
        "--show-only",
        "templates/nodeagent.yaml",
    )
    out = crds.kubectl("apply", "--dry-run=server", "-n", namespace, stdin=manifest)
    assert "daemonset.apps" in out and "role.rbac.authorization.k8s.io" in out
