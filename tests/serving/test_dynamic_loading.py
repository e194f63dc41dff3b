"""Dynamic loading on the real serving loop: models that sleep, wake on a held request, make
room for each other on a GPU type, and scale with load.

Everything is real but the GPUs: the operator (its autoscaler), two gateway processes
that hold requests and report them in their Leases, the API server, the scheduler that
leaves a pod Pending on `Insufficient nvidia.com/gpu`, and the llama.cpp servers that the
pod runner starts on the pod network (so every activation is a real model load). The
GPU node is a KWOK node of this module's own, with one GPU of a product nobody else
asks for, so two models that each want it really compete for it.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.kube import FakeNode, KubeCluster, build_node
from modelserve.testbed.platform import (
    RunningOperator,
    RunningService,
    gateway_kubeconfig,
    start_service,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.testing_loop import OWNER, modelserve

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

SECRET = "dynamic-loading-tests-secret-of-32-bytes"
# Long enough for a real model load on a busy 2-core machine; the tests never wait it out.
HOLD_SECONDS = 120


def headers() -> dict[str, str]:
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    return {"Authorization": f"Bearer {signer.sign(OWNER)}"}


def chat(
    gateway: RunningService, model: str, *, max_tokens: int = 4, timeout: float = 240
) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "Say hi"}],
            "max_tokens": max_tokens,
        },
        headers=headers(),
        timeout=timeout,
    )


def sleepy(name: str, uri: str, replicas: int, **autoscaling: Any) -> dict[str, Any]:
    """A llama.cpp ModelServe with its own served name, autoscaled from 0."""
    body = modelserve(name, uri, replicas)
    body["spec"]["model"]["servedName"] = name
    # 2 slots of 2048 tokens: room for a long answer beside a short one.
    body["spec"]["args"] = ["--ctx-size", "4096", "--parallel", "2", "--threads", "1"]
    body["spec"]["autoscaling"] = {"minReplicas": 0, "maxReplicas": 1, **autoscaling}
    return body


def on_gpu(body: dict[str, Any], product: str) -> dict[str, Any]:
    body["spec"]["resources"] = {"gpus": 1, "gpuType": product}
    return body


def status(kube: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kube.get_json("ms", name, "-n", namespace).get("status") or {}
    return found


def wait_phase(kube: KubeCluster, namespace: str, name: str, phase: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        found = status(kube, namespace, name)
        return found if found.get("phase") == phase else None

    return wait_for(reached, timeout=180, what=f"{namespace}/{name} to be {phase}")


def deployment_replicas(kube: KubeCluster, namespace: str, name: str) -> int:
    return int(kube.get_json("deployment", name, "-n", namespace)["spec"]["replicas"])


def events(kube: KubeCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    found = kube.get_json("events", "-n", namespace)["items"]
    return [e for e in found if e["involvedObject"].get("name") == name]


def reasons(kube: KubeCluster, namespace: str, name: str) -> list[str]:
    return [e.get("reason", "") for e in events(kube, namespace, name)]


def operator_metric(operator: RunningOperator, metric: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def bed(crds: KubeCluster, database_url: str, testbed_dir: Path) -> Iterator[dict[str, Any]]:
    """A namespace, a GPU node of its own, and two gateway replicas on one database."""
    namespace = f"dyn-{uuid.uuid4().hex[:8]}"
    product = f"TEST-DYN-{uuid.uuid4().hex[:6].upper()}"
    node = FakeNode(f"gpu-dyn-{namespace}", cpu="16", memory="64Gi", gpus=1, gpu_product=product)
    crds.kubectl("create", "namespace", namespace)
    crds.kubectl("apply", stdin=yaml.safe_dump(build_node(node)))
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "dynamic-loading-admin-password",
        "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
        "GATEWAY_WATCH_NAMESPACES": namespace,
        "GATEWAY_HOLD_TIMEOUT_SECONDS": str(HOLD_SECONDS),
    }
    logs = testbed_dir / "logs"
    gateways: list[RunningService] = []
    try:
        with fresh_schema(database_url, "dyn") as schema:
            database = {"GATEWAY_DATABASE_URL": schema_url(database_url, schema)}
            for replica in ("a", "b"):
                replica_settings = {**database, **settings, "GATEWAY_REPLICA_ID": f"dyn-{replica}"}
                gateways.append(start_service("gateway", logs, replica_settings))
            yield {"namespace": namespace, "product": product, "gateways": gateways}
    finally:
        for gateway in gateways:
            gateway.stop()
        crds.kubectl("delete", "namespace", namespace, "--wait=false")
        crds.kubectl("delete", "node", node.name, "--wait=false")


def test_an_idle_model_sleeps_and_a_chat_wakes_it_once_across_two_gateways(
    crds: KubeCluster, operator: RunningOperator, bed: dict[str, Any], smollm2_uri: str
) -> None:
    """1 → 0 → 1 on a real llama.cpp server: the idle model goes to 0 replicas and says so;
    a request to each of the two gateway replicas at once wakes it once, and both are
    answered (held, then forwarded); it sleeps again and wakes again."""
    namespace, (first, second) = bed["namespace"], bed["gateways"]
    name = "napper"
    body = sleepy(name, smollm2_uri, 1, idleTimeoutSeconds=10)
    crds.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(body))
    wait_phase(crds, namespace, name, "Ready")
    assert chat(first, name).status_code == 200

    asleep = wait_phase(crds, namespace, name, "Sleeping")
    assert asleep["desiredReplicas"] == 0
    assert asleep["lastRequestTime"]
    assert deployment_replicas(crds, namespace, name) == 0
    wait_for(lambda: not crds.get_json("pods", "-n", namespace, "-l",
             f"llm.modelserve.io/modelserve={name}")["items"], timeout=60,
             what="the sleeping model's pods to go")  # fmt: skip
    listed = httpx.get(f"{first.url}/v1/models", headers=headers(), timeout=10).json()
    (model,) = [m for m in listed["data"] if m["id"] == name]
    assert model["state"] == "sleeping"

    activations = operator_metric(operator, "modelserve_operator_activations_total", name=name)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda gateway: chat(gateway, name), (first, second)))

    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert all(a.json()["choices"][0]["message"]["content"] for a in answers)
    woken = operator_metric(operator, "modelserve_operator_activations_total", name=name)
    assert woken - activations == 1
    assert status(crds, namespace, name)["phase"] == "Ready"
    assert "Activated" in reasons(crds, namespace, name)


def test_a_request_held_while_the_operator_restarts_is_answered(
    crds: KubeCluster, operator: RunningOperator, bed: dict[str, Any], smollm2_uri: str
) -> None:
    namespace, gateway = bed["namespace"], bed["gateways"][0]
    name = "restarter"
    crds.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(sleepy(name, smollm2_uri, 0)))
    wait_phase(crds, namespace, name, "Sleeping")

    operator.crash()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(chat, gateway, name)
        wait_for(lambda: _held(gateway, name) >= 1, timeout=30, what="the request to be held")
        operator.start()
        answer = held.result(timeout=HOLD_SECONDS + 60)

    assert answer.status_code == 200, answer.text


def _held(gateway: RunningService, model: str) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("modelserve_gateway_held_requests{") and f'"{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_gpu_models_make_room_for_each_other_least_recently_used_first(
    crds: KubeCluster, operator: RunningOperator, bed: dict[str, Any], smollm2_uri: str
) -> None:
    """One GPU, two models that each need it: a request for the sleeping B evicts idle A
    and is answered; while B streams a long answer, a request for A waits, and is answered
    once B is idle; a pinned model is never evicted, and the request that would need it
    gets a clear error instead of a hang."""
    namespace, product, gateway = bed["namespace"], bed["product"], bed["gateways"][0]
    a = on_gpu(sleepy("gpu-a", smollm2_uri, 1, minResidenceSeconds=0), product)
    b = on_gpu(sleepy("gpu-b", smollm2_uri, 0, minResidenceSeconds=0), product)
    crds.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump_all([a, b]))
    wait_phase(crds, namespace, "gpu-a", "Ready")
    wait_phase(crds, namespace, "gpu-b", "Sleeping")

    # B wakes: A, idle, is put to sleep for it.
    answer = chat(gateway, "gpu-b")
    assert answer.status_code == 200, answer.text
    slept = status(crds, namespace, "gpu-a")
    assert slept["phase"] == "Sleeping"
    assert "gpu-b" in slept["message"]
    assert "Evicted" in reasons(crds, namespace, "gpu-a")
    assert operator_metric(operator, "modelserve_operator_evictions_total") >= 1

    # B busy with a long stream: a request for A waits for it, and then gets the GPU.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        streaming = pool.submit(_long_stream, gateway, "gpu-b", tokens=600)
        wait_for(lambda: _in_flight_somewhere(crds, "gpu-b"), timeout=30, what="B to stream")
        waiting = pool.submit(chat, gateway, "gpu-a")
        wait_for(
            lambda: (
                "gpu-b" in status(crds, namespace, "gpu-a").get("message", "") or waiting.done()
            ),
            timeout=60,
            what="A to wait for the busy B",
        )
        assert not waiting.done(), "A was answered while B still streamed on the only GPU"
        assert streaming.result(timeout=120) > 0  # B's stream ran to its end, whole
        assert waiting.result(timeout=HOLD_SECONDS + 60).status_code == 200
    assert status(crds, namespace, "gpu-b")["phase"] == "Sleeping"

    # A pinned: a request for B finds nothing to evict, and says so at once.
    pin = json.dumps({"spec": {"autoscaling": {"pinned": True}}})
    crds.kubectl("patch", "ms/gpu-a", "-n", namespace, "--type=merge", "-p", pin)
    refused = chat(gateway, "gpu-b", timeout=HOLD_SECONDS + 60)
    assert refused.status_code == 503, refused.text
    assert "pinned" in refused.json()["error"]["message"]
    assert refused.headers.get("retry-after")
    assert status(crds, namespace, "gpu-a")["phase"] == "Ready"
    assert deployment_replicas(crds, namespace, "gpu-a") == 1


def _in_flight_somewhere(kube: KubeCluster, model: str) -> bool:
    leases = kube.get_json("leases", "-n", "modelserve", "-l", "llm.modelserve.io/gateway-load")
    for lease in leases["items"]:
        report = json.loads(lease["metadata"]["annotations"]["llm.modelserve.io/load"])
        if any(load.get("inFlight") for load in report.get("servers", {}).values()):
            return True
    return False


def _long_stream(gateway: RunningService, model: str, *, tokens: int) -> int:
    """A streamed answer of exactly `tokens` tokens (`ignore_eos`): the request stays in
    flight while the model generates them (seconds on this machine). Its chunks."""
    chunks = 0
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={
            "model": model,
            "stream": True,
            "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": tokens,
            "ignore_eos": True,
        },
        headers=headers(),
        timeout=300,
    ) as answer:
        assert answer.status_code == 200, answer.read()
        for line in answer.iter_lines():
            if line.startswith("data: {"):
                assert "error" not in json.loads(line[6:]), line
                chunks += 1
    return chunks


def test_a_burst_scales_out_and_back_with_no_failed_request(
    crds: KubeCluster, operator: RunningOperator, bed: dict[str, Any], smollm2_uri: str
) -> None:
    """Between 1 and 2 replicas on the requests in flight across both gateways: a burst of
    slow streams takes it to 2, the quiet after it back to 1, and no request fails."""
    namespace, gateways = bed["namespace"], bed["gateways"]
    name = "bursty"
    body = sleepy(name, smollm2_uri, 1, minReplicas=1, maxReplicas=2, targetRequests=1)
    body["spec"]["autoscaling"]["windowSeconds"] = 5
    crds.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(body))
    wait_phase(crds, namespace, name, "Ready")

    peak = 0
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        streams = [pool.submit(_long_stream, gateways[i % 2], name, tokens=300) for i in range(4)]
        while not all(s.done() for s in streams):
            peak = max(peak, status(crds, namespace, name).get("readyReplicas", 0))
            time.sleep(0.5)
        assert all(s.result() > 0 for s in streams)
    assert peak == 2
    wait_for(
        lambda: status(crds, namespace, name).get("desiredReplicas") == 1,
        timeout=120,
        what="the model to scale back to 1",
    )
    assert chat(gateways[1], name).status_code == 200


def _pods_in_flight(kube: KubeCluster, uid: str) -> dict[str, int]:
    """Requests in flight per pod of a model, over every gateway replica's report."""
    leases = kube.get_json("leases", "-n", "modelserve", "-l", "llm.modelserve.io/gateway-load")
    found: dict[str, int] = {}
    for lease in leases["items"]:
        report = json.loads(lease["metadata"]["annotations"]["llm.modelserve.io/load"])
        for pod, count in (report.get("servers", {}).get(uid, {}).get("pods") or {}).items():
            found[pod] = found.get(pod, 0) + count
    return found


def _only_busy_pod(kube: KubeCluster, uid: str) -> str | None:
    busy = _pods_in_flight(kube, uid)
    return next(iter(busy)) if len(busy) == 1 else None


def _running_pods(kube: KubeCluster, namespace: str, name: str) -> set[str]:
    found = kube.get_json("pods", "-n", namespace, "-l", f"llm.modelserve.io/modelserve={name}")
    return {
        p["metadata"]["name"] for p in found["items"] if not p["metadata"].get("deletionTimestamp")
    }


def test_scaling_down_lets_the_replica_with_a_long_stream_finish(
    crds: KubeCluster, operator: RunningOperator, bed: dict[str, Any], smollm2_uri: str
) -> None:
    """2 → 1 while a long stream runs on one replica: the replica without a request goes
    (fenced by status.podDrain, then marked to go first), the stream ends whole. Without
    the fence the ReplicaSet picks either pod, and a stream on the one it picks is cut
    once its preStop sleep (OPERATOR_DRAIN_SECONDS, 2 s here) ends."""
    namespace, gateway = bed["namespace"], bed["gateways"][0]
    name = "fenced"
    body = sleepy(name, smollm2_uri, 1, minReplicas=1, maxReplicas=2, targetRequests=1)
    body["spec"]["autoscaling"]["windowSeconds"] = 5
    crds.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(body))
    wait_phase(crds, namespace, name, "Ready")
    uid = crds.get_json("ms", name, "-n", namespace)["metadata"]["uid"]
    tokens = 1200

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        # Two streams on the first replica take the model to 2; the long one then goes to
        # the new replica, the least busy.
        warmers = [pool.submit(_long_stream, gateway, name, tokens=400) for _ in range(2)]
        wait_for(
            lambda: status(crds, namespace, name).get("readyReplicas") == 2,
            timeout=120,
            what="a second replica",
        )
        time.sleep(1)  # the gateway's watch sees the new endpoint
        long = pool.submit(_long_stream, gateway, name, tokens=tokens)
        assert all(w.result(timeout=240) > 0 for w in warmers)
        streaming = wait_for(
            lambda: _only_busy_pod(crds, uid), timeout=30, what="the long stream alone in flight"
        )
        wait_for(
            lambda: deployment_replicas(crds, namespace, name) == 1,
            timeout=120,
            what="the model to scale back to 1",
        )
        assert not long.done(), "the long stream ended before the scale-down: make it longer"
        wait_for(
            lambda: _running_pods(crds, namespace, name) == {streaming},
            timeout=60,
            what="the idle replica to go",
        )
        assert long.result(timeout=300) >= tokens  # every token, no error event
    assert status(crds, namespace, name).get("desiredReplicas") == 1
    wait_for(
        lambda: "podDrain" not in status(crds, namespace, name), timeout=30, what="the fence to end"
    )
