"""The operator against the real control plane: ModelServes become running servers."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest

from modelserve.common.modelserve import API_KEY_HOSTS_ANNOTATION, API_KEY_LABEL
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import LlmServer
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningOperator
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import tag_as_recorded
from modelserve.testbed.testing_operator import apply, get, manifest, wait_phase

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture(scope="module")
def example_models(platform_store: MinioServer) -> None:
    """The vLLM examples' folders in the platform store, as downloads leave them (tagged
    with their digests): their pods are KWOK's, so one small file each will do."""
    for example in ("vllm-1gpu.yaml", "vllm-tp2.yaml"):
        uri = manifest(example)["spec"]["model"]["uri"]
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        data = b"{}"
        platform_store.client().put_object(bucket, f"{prefix}config.json", io.BytesIO(data), 2)
        digest = hashlib.sha256(data).hexdigest()
        tag_as_recorded(platform_store.client(), bucket, f"{prefix}config.json", digest, example)


@pytest.mark.parametrize(
    ("example", "replicas", "gpus", "node"),
    [
        ("vllm-1gpu.yaml", 1, 1, None),
        ("vllm-tp2.yaml", 1, 2, "gpu-l4-0"),
        ("llamacpp-cpu.yaml", 2, 0, "cpu-0"),
        ("llamacpp-gpu.yaml", 1, 1, None),
    ],
)
def test_example_becomes_ready(
    crds: KubeCluster,
    namespace: str,
    smollm2_uri: str,
    example_models: None,
    example: str,
    replicas: int,
    gpus: int,
    node: str | None,
) -> None:
    """vLLM pods are KWOK's; llama.cpp pods (CPU and CUDA images) really run, Ready once
    their server answers /health. The GPU example's Mistral is not here: it runs SmolLM2."""
    changes = {"spec__model__uri": smollm2_uri} if example == "llamacpp-gpu.yaml" else {}
    name = apply(crds, namespace, manifest(example, **changes))
    status = wait_phase(crds, namespace, name, "Ready")

    assert status["readyReplicas"] == replicas
    assert status["endpoint"].startswith(f"http://{name}.{namespace}.svc.cluster.local:")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    pods = get(crds, namespace, "pods", "-l", f"llm.modelserve.io/modelserve={name}")["items"]
    assert len(pods) == replicas
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        limits = pod["spec"]["containers"][0]["resources"].get("limits", {})
        assert int(limits.get("nvidia.com/gpu", 0)) == gpus
        if node:
            assert pod["spec"]["nodeName"] == node
    route = get(crds, namespace, "ingressroutes", name)
    assert route["spec"]["routes"][0]["match"] == f"PathPrefix(`/{status['serverId']}/`)"
    # Children go with owner references: no finalizer that a dead operator would leave stuck.
    assert not get(crds, namespace, "ms", name)["metadata"].get("finalizers")
    events = get(crds, namespace, "events", "--field-selector", f"involvedObject.name={name}")
    assert "Ready" in {event["reason"] for event in events["items"]}


def test_external_server_becomes_ready(crds: KubeCluster, namespace: str, llm: LlmServer) -> None:
    crds.kubectl(
        "create",
        "secret",
        "generic",
        "hosted-smollm2-key",
        "-n",
        namespace,
        "--from-literal=api-key=not-checked-by-llama-cpp",
    )
    crds.kubectl("label", "secret", "hosted-smollm2-key", "-n", namespace, f"{API_KEY_LABEL}=true")
    host = f"{API_KEY_HOSTS_ANNOTATION}={llm.url.removeprefix('http://').split('/')[0]}"
    crds.kubectl("annotate", "secret", "hosted-smollm2-key", "-n", namespace, host)
    name = apply(crds, namespace, manifest("external.yaml", spec__external__url=llm.url))
    status = wait_phase(crds, namespace, name, "Ready")
    assert status["endpoint"] == llm.url
    assert "smollm2-135m-instruct" in status["message"]


def test_unreachable_external_server_is_not_ready_with_the_reason(
    crds: KubeCluster, namespace: str
) -> None:
    body = manifest("external.yaml", spec__external__url="http://127.0.0.1:9/v1")
    del body["spec"]["external"]["apiKeySecretRef"]
    name = apply(crds, namespace, body)
    status = wait_phase(crds, namespace, name, "Degraded")
    assert "unreachable" in status["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ProbeFailed")


def test_too_many_gpus_stay_pending_with_the_schedulers_reason(
    crds: KubeCluster, namespace: str
) -> None:
    body = manifest("vllm-1gpu.yaml", spec__resources={"gpus": 8})
    name = apply(crds, namespace, body)
    status = wait_phase(crds, namespace, name, "Pending")
    wait_for(
        lambda: (
            "Insufficient nvidia.com/gpu"
            in (get(crds, namespace, "ms", name)["status"].get("message") or "")
        ),
        timeout=60,
        what="the scheduler's reason in the status",
    )
    status = get(crds, namespace, "ms", name)["status"]
    scheduled = next(c for c in status["conditions"] if c["type"] == "Scheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")


def test_scale_follows(crds: KubeCluster, namespace: str) -> None:
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml", spec__replicas=1))
    wait_phase(crds, namespace, name, "Ready")
    crds.kubectl("scale", "-n", namespace, f"ms/{name}", "--replicas=3")
    wait_for(
        lambda: (
            get(crds, namespace, "ms", name)["status"].get("readyReplicas") == 3
            and get(crds, namespace, "ms", name)["status"]["phase"] == "Ready"
        ),
        timeout=60,
        what="three ready replicas",
    )
    assert get(crds, namespace, "deployment", name)["spec"]["replicas"] == 3


def test_spec_change_rolls_the_deployment(crds: KubeCluster, namespace: str) -> None:
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml", spec__replicas=1))
    wait_phase(crds, namespace, name, "Ready")
    before = get(crds, namespace, "deployment", name)["metadata"]["generation"]
    apply(
        crds,
        namespace,
        manifest("llamacpp-cpu.yaml", spec__replicas=1, spec__args=["--ctx-size", "1024"]),
    )

    def rolled() -> Any:
        deployment = get(crds, namespace, "deployment", name)
        ms = get(crds, namespace, "ms", name)
        return (
            deployment["metadata"]["generation"] > before
            and ms["status"].get("observedGeneration") == ms["metadata"]["generation"]
            and ms["status"]["phase"] == "Ready"
            and deployment
        )

    deployment = wait_for(rolled, timeout=60, what="the new template to roll out")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--ctx-size", "1024"]
    assert args.count("--ctx-size") == 1


def test_kubectl_wait_for_ready_waits_for_the_change(crds: KubeCluster, namespace: str) -> None:
    """`kubectl wait --for=condition=Ready` right after a change returns once the change runs:
    the condition speaks for a generation only once the Deployment was applied for it
    and rolled out, however soon the operator writes the status."""
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml", spec__replicas=1))
    wait_phase(crds, namespace, name, "Ready")
    apply(
        crds,
        namespace,
        manifest("llamacpp-cpu.yaml", spec__replicas=1, spec__args=["--ctx-size", "1536"]),
    )
    crds.kubectl("wait", "-n", namespace, f"ms/{name}", "--for=condition=Ready", "--timeout=60s")
    ms = get(crds, namespace, "ms", name)
    deployment = get(crds, namespace, "deployment", name)
    assert ms["status"]["observedGeneration"] == ms["metadata"]["generation"]
    assert deployment["metadata"]["labels"]["llm.modelserve.io/generation"] == str(
        ms["metadata"]["generation"]
    )
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == [
        "--ctx-size",
        "1536",
    ]
    rollout = deployment["status"]
    assert rollout["observedGeneration"] == deployment["metadata"]["generation"]
    assert rollout.get("updatedReplicas") == rollout.get("readyReplicas") == 1


def test_deleting_the_modelserve_removes_every_child(crds: KubeCluster, namespace: str) -> None:
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml"))
    wait_phase(crds, namespace, name, "Ready")
    kinds = "deployments,services,secrets,ingressroutes,pods"
    selector = f"llm.modelserve.io/modelserve={name}"
    # the Deployment, Service, Secret and route, and two pods
    assert len(get(crds, namespace, kinds, "-l", selector)["items"]) == 6
    crds.kubectl("delete", "-n", namespace, f"ms/{name}", "--wait=true")
    wait_for(
        lambda: not get(crds, namespace, kinds, "-l", selector)["items"],
        timeout=90,
        what="garbage collection of every child",
    )


def test_children_changed_by_hand_are_restored(crds: KubeCluster, namespace: str) -> None:
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml", spec__replicas=1))
    wait_phase(crds, namespace, name, "Ready")
    service_uid = get(crds, namespace, "service", name)["metadata"]["uid"]

    crds.kubectl("delete", "-n", namespace, "service", name)
    crds.kubectl("scale", "-n", namespace, f"deployment/{name}", "--replicas=4")
    crds.kubectl(
        "patch",
        "-n",
        namespace,
        "ingressroute",
        name,
        "--type=json",
        "-p",
        '[{"op": "replace", "path": "/spec/routes/0/services/0/name", "value": "evil"}]',
    )

    wait_for(
        lambda: get(crds, namespace, "service", name)["metadata"]["uid"] != service_uid,
        timeout=60,
        what="the deleted Service to be recreated",
    )
    wait_for(
        lambda: get(crds, namespace, "deployment", name)["spec"]["replicas"] == 1,
        timeout=60,
        what="the Deployment's replicas to be restored",
    )
    wait_for(
        lambda: (
            get(crds, namespace, "ingressroute", name)["spec"]["routes"][0]["services"][0]["name"]
            != "evil"
        ),
        timeout=60,
        what="the route to the gateway to be restored",
    )


def test_operator_crash_midway_leaves_no_duplicates_or_orphans(
    crds: KubeCluster, namespace: str, operator: RunningOperator
) -> None:
    names = [f"crash-{i}" for i in range(6)]
    for name in names:
        apply(crds, namespace, manifest("llamacpp-cpu.yaml", metadata__name=name, spec__replicas=1))
    # Crash as soon as the first children exist: the rest is half done.
    wait_for(lambda: get(crds, namespace, "deployments")["items"], timeout=60, what="a first child")
    operator.crash()
    operator.start()

    for name in names:
        wait_phase(crds, namespace, name, "Ready")
    deployments = get(crds, namespace, "deployments")["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(names)
    owned = get(crds, namespace, "deployments,services,secrets,ingressroutes")
    for child in owned["items"]:
        owners = child["metadata"].get("ownerReferences") or []
        assert [o["name"] for o in owners if o["kind"] == "ModelServe"], child["metadata"]["name"]


def test_the_operator_needed_nothing_beyond_its_rbac(operator: RunningOperator) -> None:
    """The operator runs as its service account (see conftest): no call was forbidden."""
    refused = [
        line
        for line in operator.process.log_path.read_text().splitlines()
        # Writes into a namespace being deleted, or past its quota (the tests below make
        # one), are refused whatever the RBAC says.
        if "forbidden" in line.lower()
        and "being terminated" not in line
        and "exceeded quota" not in line
    ]
    assert not refused, "\n".join(refused)


def test_a_server_without_its_service_is_not_ready(crds: KubeCluster, namespace: str) -> None:
    """Its replica serves and nothing routes to it: a quota forbids Services in the
    namespace, so the operator cannot make the Service (nor, after it, the route). The
    status says what is missing and is not Ready; once the quota is gone, the operator's
    next try makes them, and it is Ready."""
    crds.kubectl("create", "quota", "no-services", "-n", namespace, "--hard=services=0")
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml", spec__replicas=1))

    def replica_ready() -> dict[str, Any] | None:
        status: dict[str, Any] = get(crds, namespace, "ms", name).get("status") or {}
        return status if status.get("readyReplicas") == 1 else None

    status = wait_for(replica_ready, timeout=90, what=f"{name}'s replica to be ready")
    assert status["phase"] == "Deploying", status
    assert (
        status["message"] == f"1/1 replicas ready: creating the IngressRoute {name}, Service {name}"
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Deploying")
    assert not get(crds, namespace, "services")["items"]

    # A refusal by quota is tried again (QUOTA_RETRY_SECONDS): room made, it goes through.
    crds.kubectl("delete", "quota", "no-services", "-n", namespace)
    status = wait_phase(crds, namespace, name, "Ready")
    assert status["message"] == "1/1 replicas ready"
    assert get(crds, namespace, "service", name)["metadata"]["name"] == name
    assert get(crds, namespace, "ingressroute", name)["metadata"]["name"] == name


def test_a_child_that_cannot_be_put_back_at_once_is_put_back_later(
    crds: KubeCluster, namespace: str
) -> None:
    """A Service deleted by hand while a quota forbids new ones: the put-back its deletion
    starts is refused, and no other event comes for a Service that is gone. The
    ModelServe says what it lacks; once the quota is gone, the operator's next try
    (QUOTA_RETRY_SECONDS) makes the Service again, and it is Ready."""
    name = apply(crds, namespace, manifest("llamacpp-cpu.yaml", spec__replicas=1))
    wait_phase(crds, namespace, name, "Ready")
    crds.kubectl("create", "quota", "no-services", "-n", namespace, "--hard=services=0")

    def quota_in_force() -> bool:
        status = get(crds, namespace, "quota", "no-services").get("status") or {}
        return "services" in status.get("hard", {})

    wait_for(quota_in_force, timeout=30, what="the quota to be in force")
    crds.kubectl("delete", "-n", namespace, "service", name)

    status = wait_phase(crds, namespace, name, "Deploying")
    assert status["message"] == f"1/1 replicas ready: creating the Service {name}", status
    assert not get(crds, namespace, "services")["items"]

    crds.kubectl("delete", "quota", "no-services", "-n", namespace)
    status = wait_phase(crds, namespace, name, "Ready")
    assert status["message"] == "1/1 replicas ready"
    assert get(crds, namespace, "service", name)["metadata"]["name"] == name
