"""The simulated cluster is a real control plane: scheduling, GPUs, garbage collection."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s

from modelserve.common.modelserve import GPU_PRODUCT_LABEL, GPU_RESOURCE
from modelserve.testbed.kube import (
    DEFAULT_NODES,
    GPU_TAINT_KEY,
    KubeCluster,
    build_node,
)
from modelserve.testbed.polling import wait_for

GPU_TOLERATION = k8s.V1Toleration(key=GPU_TAINT_KEY, operator="Exists", effect="NoSchedule")


def gpu_deployment(name: str, gpus: int) -> k8s.V1Deployment:
    labels = {"app": name}
    container = k8s.V1Container(
        name="server",
        image="vllm/vllm-openai:latest",
        resources=k8s.V1ResourceRequirements(limits={GPU_RESOURCE: str(gpus)}),
    )
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1DeploymentSpec(
            replicas=1,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(containers=[container], tolerations=[GPU_TOLERATION]),
            ),
        ),
    )


def pods_of(core: k8s.CoreV1Api, namespace: str, app: str) -> list[k8s.V1Pod]:
    items: list[k8s.V1Pod] = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return items


def test_nodes_advertise_gpus(kube: KubeCluster) -> None:
    nodes = {item["metadata"]["name"]: item for item in kube.get_json("nodes")["items"]}
    gpus = {
        name: int(node["status"]["allocatable"].get(GPU_RESOURCE, 0))
        for name, node in nodes.items()
    }
    assert gpus == {"gpu-a100-0": 4, "gpu-l4-0": 2, "cpu-0": 0}
    assert nodes["gpu-l4-0"]["metadata"]["labels"][GPU_PRODUCT_LABEL] == "NVIDIA-L4"
    assert GPU_PRODUCT_LABEL not in nodes["cpu-0"]["metadata"]["labels"]


def test_kubectl_reports_the_pinned_server_version(kube: KubeCluster) -> None:
    version = json.loads(kube.kubectl("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == "v1.35.4"
    assert version["clientVersion"]["gitVersion"] == "v1.35.4"


def test_gpu_pod_is_scheduled_on_a_gpu_node_and_runs(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, gpu_deployment("one-gpu", gpus=1))

    def running_pod() -> k8s.V1Pod | None:
        pods = pods_of(core, namespace, "one-gpu")
        return next((p for p in pods if p.status.phase == "Running" and p.status.pod_ip), None)

    pod = wait_for(running_pod, timeout=60, what="the GPU pod to run")
    node = core.read_node(pod.spec.node_name)
    assert int(node.status.allocatable[GPU_RESOURCE]) >= 1
    assert GPU_PRODUCT_LABEL in node.metadata.labels

    def available() -> k8s.V1Deployment | None:
        deployment = apps.read_namespaced_deployment("one-gpu", namespace)
        return deployment if deployment.status.available_replicas == 1 else None

    deployment = wait_for(available, timeout=60, what="the deployment to become available")
    assert deployment.status.ready_replicas == 1


def test_pod_asking_for_more_gpus_than_any_node_stays_pending(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, gpu_deployment("eight-gpus", gpus=8))

    def unschedulable() -> Any:
        for pod in pods_of(core, namespace, "eight-gpus"):
            for condition in pod.status.conditions or []:
                if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                    return pod, condition
        return None

    pod, condition = wait_for(unschedulable, timeout=60, what="the scheduler to give up")
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None
    assert f"Insufficient {GPU_RESOURCE}" in condition.message


def test_deleting_a_deployment_collects_its_replicaset_and_pods(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    apps, core = k8s.AppsV1Api(kube_api), k8s.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, gpu_deployment("short-lived", gpus=1))
    wait_for(
        lambda: (
            apps.list_namespaced_replica_set(namespace).items
            and pods_of(core, namespace, "short-lived")
        ),
        timeout=60,
        what="the ReplicaSet and its pod",
    )

    apps.delete_namespaced_deployment(
        "short-lived", namespace, body=k8s.V1DeleteOptions(propagation_policy="Background")
    )

    wait_for(
        lambda: (
            not apps.list_namespaced_replica_set(namespace).items
            and not pods_of(core, namespace, "short-lived")
        ),
        timeout=60,
        what="the garbage collector to remove the ReplicaSet and pods",
    )


def test_build_node_taints_gpu_nodes_only() -> None:
    gpu, cpu = (build_node(node) for node in (DEFAULT_NODES[0], DEFAULT_NODES[2]))
    assert gpu["status"]["capacity"][GPU_RESOURCE] == "4"
    assert gpu["spec"]["taints"][0]["key"] == GPU_TAINT_KEY
    assert GPU_RESOURCE not in cpu["status"]["capacity"]
    assert "taints" not in cpu["spec"]
