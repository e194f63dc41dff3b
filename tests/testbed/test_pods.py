"""The pod runner: what a container becomes here (pure), and pods that really run."""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningOperator
from modelserve.testbed.pods.containers import (
    ContainerError,
    Programs,
    bind_to_pod,
    is_llamacpp_server,
    local_process,
    map_path,
    volume_folders,
)
from modelserve.testbed.pods.network import Layout, PodNetworkError
from modelserve.testbed.pods.statuses import ContainerRecord, conditions, exit_code, pod_status
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import tag_as_recorded

PROGRAMS = Programs(llama_server=lambda: Path("/bin/llama-server"), scripts=Path("/venv/bin"))
NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "nodeName": "cpu-0",
            "volumes": [
                {"name": "model", "emptyDir": {}},
                {"name": "cache", "persistentVolumeClaim": {"claimName": "c"}},
            ],
            **spec,
        },
    }


def no_lookup(kind: str, name: str, key: str) -> str | None:
    return {("secret", "s", "k"): "v"}.get((kind, name, key))


# --- Pure -----------------------------------------------------------------------------


def test_llamacpp_images_are_recognised_by_repository_and_server_tag() -> None:
    assert is_llamacpp_server("ghcr.io/ggml-org/llama.cpp:server")
    assert is_llamacpp_server("ghcr.io/ggml-org/llama.cpp:server-cuda")
    assert not is_llamacpp_server("ghcr.io/ggml-org/llama.cpp:full")
    assert not is_llamacpp_server("vllm/vllm-openai:v0.33.0")


def test_the_server_runs_llama_server_with_its_args_bound_to_the_pod_ip(tmp_path: Path) -> None:
    container = {
        "name": "server",
        "image": "ghcr.io/ggml-org/llama.cpp:server-cuda",
        "args": ["--model", "/models/m.gguf", "--host", "0.0.0.0", "--n-gpu-layers", "999"],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        "volumeMounts": [{"name": "model", "mountPath": "/models"}],
    }
    the_pod = pod(containers=[container])
    folders = volume_folders(the_pod, tmp_path / "pod", tmp_path / "claims")
    process = local_process(
        container, the_pod, pod_ip="10.1.64.1", folders=folders, programs=PROGRAMS, lookup=no_lookup
    )
    model = tmp_path / "pod" / "volumes" / "model" / "m.gguf"
    assert process.argv == (
        "/bin/llama-server",
        "--model",
        str(model),
        "--host",
        "10.1.64.1",
        "--n-gpu-layers",
        "999",
    )
    assert process.env == {"A": "1", "B": "v"}


def test_a_platform_command_runs_from_the_virtual_environment(tmp_path: Path) -> None:
    scripts = tmp_path / "bin"
    scripts.mkdir()
    (scripts / "modelserve-fetch-model").touch()
    container = {
        "name": "fetch-model",
        "image": "modelserve/modelserve:0.2.0",
        "command": ["modelserve-fetch-model"],
        "env": [{"name": "MODEL_DIR", "value": "/models"}],
        "volumeMounts": [{"name": "cache", "mountPath": "/models"}],
    }
    the_pod = pod(initContainers=[container])
    folders = volume_folders(the_pod, tmp_path / "pod", tmp_path / "claims")
    process = local_process(
        container,
        the_pod,
        pod_ip="10.1.64.1",
        folders=folders,
        programs=Programs(llama_server=PROGRAMS.llama_server, scripts=scripts),
        lookup=no_lookup,
    )
    assert process.argv == (str(scripts / "modelserve-fetch-model"),)
    # A claim is one folder for every replica, as a ReadWriteMany volume is.
    assert process.env == {"MODEL_DIR": str(tmp_path / "claims" / "ns" / "c")}


def test_what_cannot_run_here_says_why(tmp_path: Path) -> None:
    folders = volume_folders(pod(), tmp_path, tmp_path)
    vllm = {"name": "server", "image": "vllm/vllm-openai:v0.33.0", "args": []}
    with pytest.raises(ContainerError) as refused:
        local_process(
            vllm, pod(), pod_ip="10.1.64.1", folders=folders, programs=PROGRAMS, lookup=no_lookup
        )
    assert refused.value.reason == "ImageNotRunnable"
    missing = {
        "name": "server",
        "image": "ghcr.io/ggml-org/llama.cpp:server",
        "env": [{"name": "B", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}],
    }
    with pytest.raises(ContainerError) as refused:
        local_process(
            missing, pod(), pod_ip="10.1.64.1", folders=folders, programs=PROGRAMS, lookup=no_lookup
        )
    assert refused.value.reason == "CreateContainerConfigError"
    with pytest.raises(ContainerError):
        volume_folders(pod(volumes=[{"name": "h", "hostPath": {"path": "/"}}]), tmp_path, tmp_path)


def test_paths_and_hosts_map_only_where_they_should() -> None:
    mounts = [("/models", Path("/x"))]
    assert map_path("/models/a.gguf", mounts) == "/x/a.gguf"
    assert map_path("/models", mounts) == "/x"
    assert map_path("/modelsX", mounts) == "/modelsX"
    assert bind_to_pod(["--host", "0.0.0.0", "--port", "8080"], "10.1.64.2") == [
        "--host",
        "10.1.64.2",
        "--port",
        "8080",
    ]
    assert bind_to_pod(["--host=::"], "10.1.64.2") == ["--host=10.1.64.2"]
    assert bind_to_pod(["--alias", "0.0.0.0"], "10.1.64.2") == ["--alias", "0.0.0.0"]


def test_the_address_plan_keeps_pods_services_and_the_host_apart() -> None:
    layout = Layout.for_octet(244)
    assert str(layout.simulated_pods) == "10.244.0.0/18"
    assert str(layout.running_pods) == "10.244.64.0/18"
    assert str(layout.services) == "10.244.128.0/17"
    assert ipaddress.IPv4Address(layout.host_address) not in layout.network


def test_a_pods_status_follows_its_containers() -> None:
    init, server = ContainerRecord("fetch-model", "img"), ContainerRecord("server", "img")
    status = pod_status(
        previous_conditions=[],
        pod_ip="10.1.64.1",
        host_ip="127.0.0.1",
        start_time=NOW,
        init=[init],
        main=[server],
        initialized=False,
        now=NOW,
    )
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    server.running(NOW)
    server.ready = True
    later = NOW + dt.timedelta(seconds=5)
    status = pod_status(
        previous_conditions=status["conditions"],
        pod_ip="10.1.64.1",
        host_ip="127.0.0.1",
        start_time=NOW,
        init=[init],
        main=[server],
        initialized=True,
        now=later,
    )
    ready = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Running"
    assert ready["Ready"]["status"] == "True"
    assert ready["PodScheduled"]["lastTransitionTime"] == "2026-12-05T12:00:00Z"
    assert ready["Ready"]["lastTransitionTime"] == "2026-12-05T12:00:05Z"
    done = server.terminated(exit_code(-9), NOW, later, "")
    assert (done["exitCode"], done["reason"]) == (137, "Error")
    assert conditions([], {"Ready": False}, NOW)[0]["status"] == "False"


# --- On the real control plane, with pods that run -------------------------------------


def _server(kube: KubeCluster, namespace: str, name: str, uri: str, **extra: Any) -> None:
    body = {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name},
        "spec": {
            "runtime": "llamacpp",
            "model": {"uri": uri, "format": "gguf"},
            "replicas": 1,
            "args": ["--ctx-size", "512", "--threads", "1"],
            **extra,
        },
    }
    kube.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(body))


def _pod(kube: KubeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    found = kube.get_json("pods", "-n", namespace, "-l", f"llm.modelserve.io/modelserve={name}")
    items: list[dict[str, Any]] = found["items"]
    return items[0] if items else None


@pytest.mark.kube
@pytest.mark.minio
def test_a_pod_runs_its_fetch_step_and_server_with_real_status_and_logs(
    crds: KubeCluster, operator: RunningOperator, namespace: str, smollm2_uri: str
) -> None:
    _server(crds, namespace, "real", smollm2_uri)

    def ready() -> dict[str, Any] | None:
        found = _pod(crds, namespace, "real")
        statuses = (found or {}).get("status", {}).get("containerStatuses") or []
        return found if statuses and statuses[0]["ready"] else None

    found = wait_for(ready, timeout=120, what="the pod's server to answer /health")
    assert crds.runner is not None
    layout = crds.network.layout
    assert ipaddress.IPv4Address(found["status"]["podIP"]) in layout.running_pods
    (init,) = found["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 0
    name = found["metadata"]["name"]
    fetched = crds.kubectl("logs", "-n", namespace, name, "-c", "fetch-model")
    assert "fetch-model:" in fetched and "MiB/s" in fetched
    served = crds.kubectl("logs", "-n", namespace, name, "-c", "server")
    assert "llama" in served.lower()
    crds.network.check_route(found["status"]["podIP"])


@pytest.mark.kube
@pytest.mark.minio
def test_a_failing_fetch_step_shows_its_reason(
    crds: KubeCluster,
    operator: RunningOperator,
    namespace: str,
    platform_store: MinioServer,
    smollm2_uri: str,
) -> None:
    """An object whose bytes are not what its record says: the operator serves it (it is a
    recorded download), the fetch step refuses it, and the pod shows why, as a kubelet
    shows a failed init container's last words."""
    bucket, _, key = smollm2_uri.removeprefix("s3://").partition("/")
    key = key.rsplit("/", 1)[0] + f"/{namespace}-altered.gguf"
    client = platform_store.client()
    client.put_object(bucket, key, io.BytesIO(b"not the recorded bytes"), 22)
    tag_as_recorded(client, bucket, key, "0" * 64, f"{namespace}-altered")
    _server(crds, namespace, "altered", f"s3://{bucket}/{key}")

    def failed() -> dict[str, Any] | None:
        found = _pod(crds, namespace, "altered")
        statuses = (found or {}).get("status", {}).get("initContainerStatuses") or []
        last = statuses[0].get("lastState", {}).get("terminated") if statuses else None
        return last if last else None

    last = wait_for(failed, timeout=90, what="the fetch step to fail")
    assert last["exitCode"] == 1
    assert "SHA-256" in last.get("message", ""), last
    ms = crds.get_json("ms", "altered", "-n", namespace)
    assert ms["status"]["phase"] in ("Deploying", "Failed")


def test_an_address_outside_the_pod_network_is_refused(crds: KubeCluster) -> None:
    with pytest.raises(PodNetworkError):
        crds.network.check_route("10.1.2.3")
    with pytest.raises(PodNetworkError):
        crds.network.check_route(str(crds.network.layout.simulated_pods.network_address + 7))
