"""The operations API on the real components: GET /logs/{server-id} reads the log of a
llama.cpp server whose pod really runs (through the pod log API the test bed's pod runner
serves), /system sums the requests of the pods the scheduler bound to the KWOK nodes as
`kubectl describe node` does, /version reads the API server's version and the image of
the operator's Deployment; the gateway acts through its own service account
(services/gateway/deploy/rbac.yaml), so its permissions are checked too."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from modelserve.common.tokens import ADMIN, TokenSettings, TokenSigner
from modelserve.gateway.operations.quantities import GPU, quantity
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningOperator, RunningService, gateway_kubeconfig
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_loop import OWNER, modelserve, wait_ready
from modelserve.testbed.testing_services import service_on_fresh_schema

pytestmark = [pytest.mark.kube, pytest.mark.minio, pytest.mark.postgres]

SECRET = "operations-api-tests-secret-of-32-bytes!"
ADMIN_PASSWORD = "operations-api-admin-password"
SIGNER = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))


@dataclasses.dataclass(frozen=True)
class Bed:
    kube: KubeCluster
    namespace: str
    name: str
    server_id: str
    gateway: RunningService

    def get(
        self, path: str, subject: str = OWNER, *, admin: bool = False, **headers: str
    ) -> httpx.Response:
        token = SIGNER.sign(subject, roles=(ADMIN,) if admin else ())
        return httpx.get(
            f"{self.gateway.url}{path}",
            headers={"Authorization": f"Bearer {token}", **headers},
            timeout=60,
        )

    def pod(self) -> dict[str, Any]:
        found = self.kube.get_json(
            "pods", "-n", self.namespace, "-l", f"llm.modelserve.io/modelserve={self.name}"
        )
        (pod,) = found["items"]
        return dict(pod)


@pytest.fixture(scope="module")
def bed(
    crds: KubeCluster,
    operator: RunningOperator,
    smollm2_uri: str,
    database_url: str,
    testbed_dir: Path,
) -> Iterator[Bed]:
    """A 1-replica llama.cpp server of `OWNER` and a gateway that serves its namespace."""
    namespace = f"ops-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", namespace)
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
        "GATEWAY_WATCH_NAMESPACES": namespace,
    }
    try:
        with service_on_fresh_schema(
            "gateway", database_url, testbed_dir / "logs", settings, prefix="ops"
        ) as gateway:
            name = "smollm2-ops"
            crds.kubectl(
                "apply", "-n", namespace, stdin=yaml.safe_dump(modelserve(name, smollm2_uri, 1))
            )
            found = wait_ready(crds, namespace, name, 1)
            yield Bed(crds, namespace, name, found["status"]["serverId"], gateway)
    finally:
        crds.kubectl("delete", "namespace", namespace, "--wait=false")


def error_code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


def test_the_owner_reads_the_log_of_their_llama_cpp_server(bed: Bed) -> None:
    answer = bed.get(f"/logs/{bed.server_id}?lines=5")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    pod = bed.pod()["metadata"]["name"]
    assert body["component"] == bed.server_id
    assert body["kind"] == "server"
    (found,) = body["pods"]
    assert (found["namespace"], found["pod"], found["container"]) == (bed.namespace, pod, "server")
    assert len(found["lines"]) == 5
    # The same lines as kubectl reads from the pod log API: llama-server's own output.
    full = bed.kube.kubectl("logs", "-n", bed.namespace, pod, "-c", "server").splitlines()
    assert set(found["lines"]) <= set(full)
    everything = bed.get(f"/logs/{bed.server_id}?lines=5000").json()["pods"][0]["lines"]
    assert any("llama" in line or "server is listening" in line for line in everything)
    assert everything[-len(full) :] == full[-len(everything) :]


def test_since_seconds_keeps_only_recent_lines(bed: Bed) -> None:
    # The server logged while it started, then nothing (its request log is off).
    wait_for(
        lambda: not bed.get(f"/logs/{bed.server_id}?since_seconds=1").json()["pods"][0]["lines"],
        timeout=30,
        what="a second without a log line",
    )
    recent = bed.get(f"/logs/{bed.server_id}?since_seconds=86400")
    assert recent.json()["pods"][0]["lines"]


def test_the_fetch_step_and_text_answers(bed: Bed) -> None:
    answer = bed.get(f"/logs/{bed.server_id}?container=fetch-model&lines=50")
    assert answer.status_code == 200, answer.text
    (found,) = answer.json()["pods"]
    assert found["container"] == "fetch-model"
    assert found["lines"]
    text = bed.get(f"/logs/{bed.server_id}?lines=3", Accept="text/plain")
    assert text.status_code == 200, text.text
    assert text.headers["content-type"].startswith("text/plain")
    header, *lines = text.text.splitlines()
    assert header == f"==> {bed.namespace}/{bed.pod()['metadata']['name']}/server <=="
    assert len(lines) == 3


def test_who_may_read_which_logs(bed: Bed) -> None:
    stranger = f"/logs/{uuid.uuid4()}"
    # Someone else's server and a server that does not exist answer the same.
    for path in (f"/logs/{bed.server_id}", stranger):
        answer = bed.get(path, "bob")
        assert answer.status_code == 403, answer.text
        assert error_code(answer) == "not_server_owner"
    assert bed.get(f"/logs/{bed.server_id}", "root", admin=True).status_code == 200
    assert error_code(bed.get(stranger, "root", admin=True)) == "server_not_found"
    platform = bed.get("/logs/gateway")
    assert platform.status_code == 403
    assert error_code(platform) == "admin_only"
    assert httpx.get(f"{bed.gateway.url}/logs/{bed.server_id}", timeout=30).status_code == 401


def test_a_platform_component_without_pods_says_so(bed: Bed) -> None:
    # On the test bed the platform's services are processes, not pods.
    answer = bed.get("/logs/gateway", "root", admin=True)
    assert answer.status_code == 404, answer.text
    assert error_code(answer) == "no_running_pod"
    assert "processes" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("query", "status", "code", "says"),
    [
        ("lines=0", 422, "invalid_request", "lines"),
        ("lines=5001", 422, "invalid_request", "5000"),
        ("lines=many", 422, "invalid_request", "integer"),
        ("since_seconds=0", 422, "invalid_request", "since_seconds"),
        # Over a year: not a 404 from what the API server makes of a huge number.
        ("since_seconds=1000000000000000000000000000000", 422, "invalid_request", "31622400"),
        ("container=sidecar", 422, "invalid_container", "fetch-model"),
    ],
)
def test_bad_log_queries_are_refused_clearly(
    bed: Bed, query: str, status: int, code: str, says: str
) -> None:
    answer = bed.get(f"/logs/{bed.server_id}?{query}")
    assert answer.status_code == status, answer.text
    assert error_code(answer) == code
    assert says in answer.json()["error"]["message"]


def test_an_unknown_component_lists_the_valid_ones(bed: Bed) -> None:
    answer = bed.get("/logs/api_server")
    assert answer.status_code == 404
    assert error_code(answer) == "unknown_component"
    assert "gateway" in answer.json()["error"]["message"]


def _describe_requests(kube: KubeCluster, node: str) -> dict[str, str]:
    """The "Allocated resources" requests `kubectl describe node` shows."""
    text = kube.kubectl("describe", "node", node).split("Allocated resources:")[1]
    found = {}
    for resource in ("cpu", "memory", GPU):
        match = re.search(rf"^\s+{re.escape(resource)}\s+(\S+)\s", text, re.MULTILINE)
        if match:
            found[resource] = match.group(1)
    return found


def _requesting_pod(node: str) -> dict[str, Any]:
    """A pod KWOK keeps Running on `node`, whose init container asks for more CPU than its
    app container (the scheduler holds the larger), with memory and a GPU."""
    requests = {"cpu": "250m", "memory": "64Mi", GPU: "1"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ops-requests"},
        "spec": {
            "nodeName": node,
            "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
            "initContainers": [
                {"name": "init", "image": "busybox", "resources": {"requests": {"cpu": "2"}}}
            ],
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "resources": {"requests": requests, "limits": {GPU: "1"}},
                }
            ],
        },
    }


def test_system_shows_each_node_with_the_requests_kubectl_counts(bed: Bed) -> None:
    nodes = {n["metadata"]["name"]: n for n in bed.kube.get_json("nodes")["items"]}
    gpu_node = next(name for name, n in nodes.items() if GPU in n["status"]["capacity"])
    bed.kube.kubectl("apply", "-n", bed.namespace, stdin=yaml.safe_dump(_requesting_pod(gpu_node)))
    server_node = bed.pod()["spec"]["nodeName"]

    def agrees() -> dict[str, Any] | None:
        answer = bed.get("/system")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        for name in {gpu_node, server_node}:
            shown = next(n for n in body["nodes"] if n["name"] == name)
            expected = _describe_requests(bed.kube, name)
            for resource in ("cpu", "memory", GPU):
                wanted = float(quantity(expected.get(resource, "0")))
                if float(shown["requests"][resource]) != wanted:
                    return None
        return body

    try:
        body = wait_for(agrees, timeout=60, what="/system to agree with kubectl describe node")
    finally:
        bed.kube.kubectl("delete", "pod", "ops-requests", "-n", bed.namespace, "--wait=false")
    assert body["unavailable"] == {}
    assert {n["name"] for n in body["nodes"]} == set(nodes)
    shown = next(n for n in body["nodes"] if n["name"] == gpu_node)
    # At least the pod above: 2 cores (its init container's), 64 MiB and a GPU.
    assert shown["requests"]["cpu"] >= 2
    assert shown["requests"]["memory"] >= 64 * 2**20
    assert shown["requests"][GPU] >= 1
    assert shown["capacity"][GPU] == int(nodes[gpu_node]["status"]["capacity"][GPU])
    assert next(n for n in body["nodes"] if n["name"] == server_node)["pods"] >= 1
    # Not admin: the platform's pods and this process are not shown.
    assert body["platform"] is None
    assert body["gateway_host"]["ram_total_gb"] > 0


def test_system_shows_admins_the_gateway_process(bed: Bed) -> None:
    answer = bed.get("/system", "root", admin=True)
    assert answer.status_code == 200, answer.text
    platform = answer.json()["platform"]
    assert platform["gateway_process"]["pid"] == bed.gateway.process.pid
    assert platform["gateway_process"]["threads"] >= 1
    # The test bed runs the platform's services as processes: no pods of theirs.
    assert platform["pods"] == []


def test_version_reads_the_cluster(bed: Bed) -> None:
    answer = bed.get("/version")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    server = json.loads(bed.kube.kubectl("version", "-o", "json"))["serverVersion"]
    assert body["kubernetes_version"] == server["gitVersion"]
    deployment = bed.kube.get_json("deployment", bed.name, "-n", bed.namespace)
    (image,) = [
        c["image"]
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == "server"
    ]
    assert {"image": image, "runtime": "llamacpp", "deployments": 1} in body["runtime_images"]
    assert body["unavailable"] == {}
    # A server's image is its owner's business: another tenant sees only what they may use.
    stranger = bed.get("/version", "mallory").json()
    assert image not in [found["image"] for found in stranger["runtime_images"]]
    assert image in [
        found["image"] for found in bed.get("/version", "root", admin=True).json()["runtime_images"]
    ]


def test_info_and_config(bed: Bed) -> None:
    info = bed.get("/info")
    assert info.status_code == 200, info.text
    assert info.json()["cluster"]["connected"] is True
    assert bed.namespace in info.json()["cluster"]["watch_namespaces"]
    refused = bed.get("/config")
    assert refused.status_code == 403
    assert error_code(refused) == "admin_only"
    config = bed.get("/config", "root", admin=True)
    assert config.status_code == 200, config.text
    assert SECRET not in config.text
    assert ADMIN_PASSWORD not in config.text
    assert config.json()["settings"]["watch_namespaces"] == bed.namespace
    assert "tokens.secret" in config.json()["redacted"]
