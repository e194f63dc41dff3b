"""Placement and pod controls (spec.placement, CPU and memory limits, envFrom,
imagePullSecrets): the builders merge them with the operator's own settings, the real API
server refuses bad values with the field's name, and on the simulated cluster (KWOK nodes)
they reach the Deployment the operator runs and steer where its pods land."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelserve.common.modelserve import GROUP, KIND, VERSION, ModelServe
from modelserve.operator.builders import build_deployment
from modelserve.operator.settings import OperatorSettings
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningOperator
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import record_config_only
from modelserve.testbed.testing_operator import get, wait_phase

SETTINGS = OperatorSettings(
    model_store_endpoint="minio.platform:9000",
    model_store_access_key="ak",  # type: ignore[arg-type]  # pydantic turns str into SecretStr
    model_store_secret_key="sk",  # type: ignore[arg-type]
)
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
ANTI_AFFINITY = {
    "preferredDuringSchedulingIgnoredDuringExecution": [
        {
            "weight": 100,
            "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {"llm.modelserve.io/modelserve": "placed"}},
            },
        }
    ]
}
# The weights of the cluster tests' vLLM server: its pods are KWOK's, one small file will do.
MODEL_URI = "s3://inference-models/models/placement-test/"


def modelserve(**spec: Any) -> ModelServe:
    return ModelServe.from_body(
        {
            "metadata": {"name": "m", "namespace": "team-a", "uid": "uid-1", "generation": 1},
            "spec": {"runtime": "vllm", "model": {"uri": MODEL_URI}, **spec},
        }
    )


def pod_spec(ms: ModelServe) -> dict[str, Any]:
    spec: dict[str, Any] = build_deployment(ms, SETTINGS)["spec"]["template"]["spec"]
    return spec


# --- The builders ------------------------------------------------------------------------


def test_placement_is_added_to_the_gpu_toleration_and_selector() -> None:
    user_toleration = {
        "key": "dedicated",
        "operator": "Equal",
        "value": "llm",
        "effect": "NoSchedule",
    }
    pod = pod_spec(
        modelserve(
            resources={"gpus": 1, "gpuType": "NVIDIA-L4"},
            placement={
                "nodeSelector": {"pool": "inference"},
                "tolerations": [user_toleration, GPU_TOLERATION],
                "affinity": {"podAntiAffinity": ANTI_AFFINITY},
                "priorityClassName": "llm-high",
            },
        )
    )

    assert pod["nodeSelector"] == {"pool": "inference", "nvidia.com/gpu.product": "NVIDIA-L4"}
    # The operator's toleration first, the user's after it; one equal to it is not repeated.
    assert pod["tolerations"] == [GPU_TOLERATION, user_toleration]
    assert pod["affinity"] == {"podAntiAffinity": ANTI_AFFINITY}
    assert pod["priorityClassName"] == "llm-high"


def test_without_placement_the_pod_spec_is_as_before() -> None:
    cpu = ModelServe.from_body(
        {
            "metadata": {"name": "m", "namespace": "team-a", "uid": "uid-1"},
            "spec": {"runtime": "llamacpp", "model": {"uri": "s3://b/m.gguf"}},
        }
    )
    pod = pod_spec(cpu)
    for field in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert field not in pod
    assert pod_spec(modelserve(resources={"gpus": 1}))["tolerations"] == [GPU_TOLERATION]


def test_a_cpu_server_gets_the_users_placement_only() -> None:
    ms = ModelServe.from_body(
        {
            "metadata": {"name": "m", "namespace": "team-a", "uid": "uid-1"},
            "spec": {
                "runtime": "llamacpp",
                "model": {"uri": "s3://b/m.gguf"},
                "placement": {
                    "nodeSelector": {"kubernetes.io/arch": "arm64"},
                    "tolerations": [{"operator": "Exists"}],
                },
            },
        }
    )
    pod = pod_spec(ms)
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert pod["tolerations"] == [{"operator": "Exists"}]


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        ({"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"}}, "use spec.resources.gpuType"),
        ({"tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]}, "takes no value"),
        ({"tolerations": [{"value": "b"}]}, "without a key needs operator Exists"),
        ({"tolerations": [{"key": "a", "tolerationSeconds": 5}]}, "only applies with effect"),
    ],
)
def test_the_spec_model_refuses_what_the_crd_refuses(
    placement: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        modelserve(resources={"gpus": 1}, placement=placement)


def test_limits_env_from_and_pull_secrets_reach_the_pod() -> None:
    env_from = [
        {"configMapRef": {"name": "tuning"}, "prefix": "APP_"},
        {"secretRef": {"name": "tokens", "optional": True}, "prefix": "HF_"},
    ]
    deployment = build_deployment(
        modelserve(
            resources={
                "gpus": 2,
                "cpu": "4",
                "cpuLimit": 8,
                "memory": "16Gi",
                "memoryLimit": "20Gi",
            },
            envFrom=env_from,
            imagePullSecrets=[{"name": "registry"}],
        ),
        SETTINGS,
    )
    pod = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"cpu": "8", "memory": "20Gi", "nvidia.com/gpu": "2"},
    }
    assert server["envFrom"] == env_from
    # The operator's HOME stays in `env`, which Kubernetes puts before envFrom's keys.
    assert server["env"][0] == {"name": "HOME", "value": "/tmp"}
    assert "envFrom" not in pod["initContainers"][0]
    assert pod["imagePullSecrets"] == [{"name": "registry"}]


def test_an_image_override_replaces_the_runtimes_image_of_the_server_only() -> None:
    image = "registry.example/llm/vllm-openai:v0.9.1"
    deployment = build_deployment(modelserve(resources={"gpus": 1}, image=image), SETTINGS)
    pod = deployment["spec"]["template"]["spec"]
    assert server_of(deployment)["image"] == image
    assert pod["initContainers"][0]["image"] == SETTINGS.fetch_image
    plain = build_deployment(modelserve(resources={"gpus": 1}), SETTINGS)
    assert server_of(plain)["image"] == SETTINGS.vllm_image
    with pytest.raises(ValidationError, match=re.escape("leave out spec.image")):
        ModelServe.from_body(
            {
                "metadata": {"name": "m", "namespace": "team-a", "uid": "uid-1"},
                "spec": {"runtime": "external", "external": {"url": "http://x/v1"}, "image": image},
            }
        )


def test_a_limit_alone_and_no_controls_at_all() -> None:
    alone = build_deployment(modelserve(resources={"memoryLimit": "2Gi"}), SETTINGS)
    assert server_of(alone)["resources"] == {"limits": {"memory": "2Gi"}}
    plain = build_deployment(modelserve(resources={"gpus": 1}), SETTINGS)
    assert "envFrom" not in server_of(plain)
    assert "imagePullSecrets" not in plain["spec"]["template"]["spec"]


def server_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"resources": {"cpu": "2", "cpuLimit": "1500m"}}, "cpuLimit (1500m) must not be below"),
        ({"resources": {"memory": "1Gi", "memoryLimit": "1000Mi"}}, "memoryLimit (1000Mi)"),
        ({"envFrom": [{"prefix": "A_"}]}, "names one configMapRef or one secretRef"),
    ],
)
def test_the_spec_model_refuses_bad_limits_and_sources(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        modelserve(**spec)


def test_equal_limits_and_requests_are_fine() -> None:
    ms = modelserve(
        resources={"cpu": "1", "cpuLimit": "1000m", "memory": "1Gi", "memoryLimit": 2**30}
    )
    assert ms.spec.resources.memory_limit == str(2**30)


# --- The API server ----------------------------------------------------------------------


def manifest(name: str, spec: dict[str, Any]) -> str:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": name}}
    return yaml.safe_dump({**body, "spec": spec})


VLLM: dict[str, Any] = {"runtime": "vllm", "model": {"uri": MODEL_URI}, "resources": {"gpus": 1}}


@pytest.mark.kube
@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        pytest.param(
            {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"}},
            "spec.placement.nodeSelector may not name nvidia.com/gpu.product: use "
            "spec.resources.gpuType",
            id="gpu-product-in-node-selector",
        ),
        pytest.param(
            {"nodeSelector": {"not a key": "x"}},
            "every key of spec.placement.nodeSelector must be a label key",
            id="node-selector-key",
        ),
        pytest.param(
            {"tolerations": [{"key": "dedicated", "operator": "Exists", "value": "llm"}]},
            "a toleration in spec.placement.tolerations with operator Exists takes no value",
            id="exists-with-value",
        ),
        pytest.param(
            {"tolerations": [{"key": "dedicated", "operator": "Sometimes"}]},
            'spec.placement.tolerations[0].operator: Unsupported value: "Sometimes"',
            id="unknown-operator",
        ),
        pytest.param(
            {"tolerations": [{"key": "dedicated", "tolerationSeconds": 60}]},
            "tolerationSeconds in spec.placement.tolerations only applies with effect NoExecute",
            id="seconds-without-no-execute",
        ),
        pytest.param(
            {"priorityClassName": "High_Priority"},
            "spec.placement.priorityClassName in body should match",
            id="priority-class-name",
        ),
        pytest.param(
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
                    }
                }
            },
            "spec.placement.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
            ".nodeSelectorTerms: Invalid value: 0: "
            "spec.placement.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
            ".nodeSelectorTerms in body should have at least 1 items",
            id="no-node-selector-term",
        ),
        pytest.param(
            {
                "affinity": {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {}}]
                    }
                }
            },
            "spec.placement.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution"
            "[0].topologyKey: Required value",
            id="pod-term-without-topology-key",
        ),
        pytest.param(
            {"affinity": {"nodeAfinity": {}}},
            'unknown field "spec.placement.affinity.nodeAfinity"',
            id="misspelt-affinity",
        ),
    ],
)
def test_bad_placement_is_refused_naming_the_field(
    crds: KubeCluster, namespace: str, placement: dict[str, Any], expected: str
) -> None:
    body = manifest("placed", {**VLLM, "placement": placement})
    with pytest.raises(RuntimeError) as refused:
        crds.kubectl("apply", "-n", namespace, stdin=body)
    assert expected in " ".join(str(refused.value).split())
    assert crds.get_json("ms", "-n", namespace)["items"] == []


@pytest.mark.kube
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"resources": {"gpus": 1, "cpu": "2", "cpuLimit": "1500m"}},
            "spec.resources.cpuLimit: Invalid value: spec.resources.cpuLimit must "
            "not be below spec.resources.cpu",
            id="cpu-limit-below-request",
        ),
        pytest.param(
            {"resources": {"gpus": 1, "memory": "16Gi", "memoryLimit": "16G"}},
            "spec.resources.memoryLimit must not be below spec.resources.memory",
            id="memory-limit-below-request",
        ),
        pytest.param(
            {"resources": {"gpus": 1, "cpuLimit": "two"}},
            "spec.resources.cpuLimit in body should match",
            id="cpu-limit-not-a-quantity",
        ),
        pytest.param(
            {"envFrom": [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]},
            "each spec.envFrom entry names one configMapRef or one secretRef",
            id="env-from-two-sources",
        ),
        pytest.param(
            {"envFrom": [{"configMapRef": {}}]},
            "spec.envFrom[0].configMapRef.name: Required value",
            id="env-from-without-name",
        ),
        pytest.param(
            {"image": "Not An Image"},
            "spec.image in body should match",
            id="image-not-a-reference",
        ),
        pytest.param(
            {
                "runtime": "external",
                "model": None,
                "resources": None,
                "external": {"url": "http://llm.default.svc:8080/v1"},
                "image": "vllm/vllm-openai:v0.9.1",
            },
            "runtime external runs elsewhere: the platform runs no image for it, leave out "
            "spec.image",
            id="image-on-external",
        ),
        pytest.param(
            {"imagePullSecrets": [{"name": "registry"}, {"name": "registry"}]},
            'spec.imagePullSecrets[1]: Duplicate value: {"name":"registry"}',
            id="duplicate-pull-secret",
        ),
    ],
)
def test_bad_pod_controls_are_refused_naming_the_field(
    crds: KubeCluster, namespace: str, changes: dict[str, Any], expected: str
) -> None:
    spec = {key: value for key, value in {**VLLM, **changes}.items() if value is not None}
    with pytest.raises(RuntimeError) as refused:
        crds.kubectl("apply", "-n", namespace, stdin=manifest("controlled", spec))
    assert expected in " ".join(str(refused.value).split())
    assert crds.get_json("ms", "-n", namespace)["items"] == []


@pytest.mark.kube
def test_integer_limits_and_requests_are_compared_as_quantities(
    crds: KubeCluster, namespace: str
) -> None:
    """cpu 1 and cpuLimit 1000m are the same; integers are quantities too."""
    resources = {"gpus": 1, "cpu": 1, "cpuLimit": "1000m", "memory": "1Gi", "memoryLimit": 2**31}
    crds.kubectl(
        "apply", "-n", namespace, stdin=manifest("limited", {**VLLM, "resources": resources})
    )
    stored = crds.get_json("ms", "limited", "-n", namespace)["spec"]["resources"]
    assert stored["cpuLimit"] == "1000m"
    assert stored["memoryLimit"] == 2**31


# --- The operator on the simulated cluster -----------------------------------------------


@pytest.fixture(scope="module")
def placement_model(platform_store: MinioServer) -> None:
    """MODEL_URI in the platform store as a download leaves it (tagged with its digest)."""
    record_config_only(platform_store, MODEL_URI, "placement-test")


@pytest.fixture
def priority_class(crds: KubeCluster) -> Any:
    name = f"llm-test-{uuid.uuid4().hex[:8]}"
    crds.kubectl(
        "apply",
        stdin=yaml.safe_dump(
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": 1000,
                "description": "a test's model servers",
            }
        ),
    )
    yield name
    crds.kubectl("delete", "priorityclass", name, "--ignore-not-found")


@pytest.mark.kube
def test_pod_controls_reach_the_deployment_and_steer_the_pods(
    crds: KubeCluster,
    namespace: str,
    operator: RunningOperator,
    placement_model: None,
    priority_class: str,
) -> None:
    """Two GPU nodes of different products could take the pod; the node selector and the
    required node affinity leave only gpu-l4-0, and the operator's GPU toleration is kept
    next to the user's."""
    user_toleration = {
        "key": "dedicated",
        "operator": "Equal",
        "value": "llm",
        "effect": "NoSchedule",
    }
    node_affinity = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "nvidia.com/gpu.count", "operator": "In", "values": ["2"]}
                    ]
                }
            ]
        }
    }
    env_from = [{"configMapRef": {"name": "tuning", "optional": True}, "prefix": "APP_"}]
    spec = {
        **VLLM,
        "resources": {
            "gpus": 1,
            "cpu": "1",
            "cpuLimit": "2",
            "memory": "1Gi",
            "memoryLimit": "2Gi",
        },
        "envFrom": env_from,
        "imagePullSecrets": [{"name": "registry"}],
        "image": "registry.example/llm/vllm-openai:v0.9.1",
        "placement": {
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [user_toleration],
            "affinity": {"nodeAffinity": node_affinity, "podAntiAffinity": ANTI_AFFINITY},
            "priorityClassName": priority_class,
        },
    }
    crds.kubectl("apply", "-n", namespace, stdin=manifest("placed", spec))
    wait_phase(crds, namespace, "placed", "Ready")

    pod_template = get(crds, namespace, "deployment", "placed")["spec"]["template"]["spec"]
    assert pod_template["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod_template["tolerations"] == [GPU_TOLERATION, user_toleration]
    assert pod_template["affinity"] == {
        "nodeAffinity": node_affinity,
        "podAntiAffinity": ANTI_AFFINITY,
    }
    assert pod_template["priorityClassName"] == priority_class
    assert pod_template["imagePullSecrets"] == [{"name": "registry"}]
    server = pod_template["containers"][0]
    assert server["image"] == "registry.example/llm/vllm-openai:v0.9.1"
    assert server["envFrom"] == env_from
    assert server["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": "1"},
    }
    (pod,) = get(crds, namespace, "pods", "-l", "llm.modelserve.io/modelserve=placed")["items"]
    assert pod["spec"]["nodeName"] == "gpu-l4-0"
    assert pod["spec"]["priority"] == 1000


@pytest.mark.kube
def test_gpu_type_and_the_users_node_selector_are_merged_on_the_cluster(
    crds: KubeCluster, namespace: str, operator: RunningOperator, placement_model: None
) -> None:
    """gpuType adds nvidia.com/gpu.product to the user's selector; a selector no node
    matches leaves the pod Pending, which shows that the user's entries are applied too."""
    spec = {
        **VLLM,
        "resources": {"gpus": 1, "gpuType": "NVIDIA-A100-SXM4-80GB"},
        "placement": {"nodeSelector": {"pool": "nowhere"}},
    }
    crds.kubectl("apply", "-n", namespace, stdin=manifest("merged", spec))

    def deployment() -> dict[str, Any] | None:
        found = get(crds, namespace, "deployments")["items"]
        return found[0] if found else None

    built = wait_for(deployment, timeout=60, what="the Deployment of merged")
    assert built["spec"]["template"]["spec"]["nodeSelector"] == {
        "pool": "nowhere",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    }

    def pending() -> dict[str, Any] | None:
        pods = get(crds, namespace, "pods", "-l", "llm.modelserve.io/modelserve=merged")["items"]
        conditions = pods[0]["status"].get("conditions", []) if pods else []
        return next((c for c in conditions if c["type"] == "PodScheduled"), None)

    scheduled = wait_for(pending, timeout=60, what="the pod of merged to be judged")
    assert scheduled["status"] == "False"
    assert "node(s) didn't match Pod's node affinity/selector" in scheduled["message"]


@pytest.mark.kube
def test_a_deployment_the_api_server_refuses_is_a_warning_event_on_the_modelserve(
    crds: KubeCluster, namespace: str, operator: RunningOperator, placement_model: None
) -> None:
    """A label selector's operator is checked by the API server only in the Deployment: the
    operator cannot apply it, and says so on the ModelServe (kubectl describe)."""
    term = {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}}
    affinity = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "podAffinityTerm": {**term, "topologyKey": "kubernetes.io/hostname"}}
            ]
        }
    }
    crds.kubectl(
        "apply",
        "-n",
        namespace,
        stdin=manifest("refused", {**VLLM, "placement": {"affinity": affinity}}),
    )

    def warned() -> Any:
        events = get(crds, namespace, "events", "--field-selector", "involvedObject.name=refused")
        return [
            event
            for event in events["items"]
            if event["reason"] == "NotApplied" and event["type"] == "Warning"
        ]

    (event, *_) = wait_for(warned, timeout=60, what="a NotApplied event")
    assert event["involvedObject"]["kind"] == "ModelServe"
    assert event["message"].startswith("Deployment refused not applied: ")
    assert "Near" in event["message"]
    assert (
        get(crds, namespace, "deployments", "-l", "llm.modelserve.io/modelserve=refused")["items"]
        == []
    )
