"""A cold request to a sleeping model, step by step, beside the same request warm.

    .venv/bin/python bench/activation.py [--rounds 5] [--keep DIR]

The test bed's control plane runs a `llamacpp` ModelServe (SmolLM2-135M) with
`spec.autoscaling.minReplicas: 0`; its pod really runs `llama-server` (the pod runner).
Each round puts the model to sleep (the operator's idle timeout, 10 s, the shortest the
CRD takes), then sends one streamed chat through the gateway and times, with this
process's clock, what it sees happen (a watch on the Deployment and the pods):

- decide: request sent → the operator set the Deployment to 1 replica (the gateway held
  the request and reported it in its Lease; the operator read the Lease and woke it);
- schedule: → the scheduler bound the new pod to a node (includes the ReplicaSet making
  the pod);
- fetch: → the pod's init step verified and copied the model from the platform store;
- start: → `llama-server` answered its readiness probe (pod Ready);
- first token: → the first streamed token reached the client (the EndpointSlice update,
  the gateway forwarding the held request, and the model's first token);

beside the same request warm (time to first token with the model loaded). The gateway's
own hold overhead, from the moment its route table saw the Ready endpoint to the moment
it forwarded the held request, is its histogram
`modelserve_gateway_hold_release_seconds` (read from /metrics before and after). The
issue's target: hold overhead <= 50 ms p50; the rest is reported as measured. Nothing
asserts on any of it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from pydantic import SecretStr

from modelserve.common.modelserve import OWNER_LABEL
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.bench_bed import bench_bed
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.measuring import percentile, revision, scratch_folder
from modelserve.testbed.platform import (
    RunningService,
)
from modelserve.testbed.polling import wait_for

ROOT = Path(__file__).resolve().parents[1]
SECRET = "activation-bench-secret-of-32-bytes!!"
NAME = "sleeper"
NAMESPACE = "default"
OWNER = "bench"
STEPS = ("decide", "schedule", "fetch", "start", "first token")
HOLD_METRIC = "modelserve_gateway_hold_release_seconds"


@dataclasses.dataclass
class Bed:
    cluster: KubeCluster
    gateway: RunningService
    token: str


@contextlib.contextmanager
def bed(folder: Path) -> Iterator[Bed]:
    """Everything, from nothing: the cluster, the store with the model, the operator, a
    gateway, and the sleeping ModelServe."""
    with bench_bed(
        folder, secret=SECRET, name="activation", operator_settings={"OPERATOR_DRAIN_SECONDS": "1"}
    ) as found:
        cluster, uri, gateway = found.cluster, found.uri, found.gateway
        body = {
            "apiVersion": "llm.modelserve.io/v1alpha1",
            "kind": "ModelServe",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {OWNER_LABEL: OWNER}},
            "spec": {
                "runtime": "llamacpp",
                "model": {"uri": uri, "format": "gguf", "servedName": NAME},
                "replicas": 0,
                "args": ["--ctx-size", "512", "--parallel", "1"],
                "autoscaling": {"minReplicas": 0, "idleTimeoutSeconds": 10},
            },
        }
        cluster.kubectl("apply", stdin=yaml.safe_dump(body))
        token = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET))).sign(OWNER)
        yield Bed(cluster, gateway, token)


class Stopwatch:
    """The first time this process saw each step of the model's wake-up (a watch thread
    per kind of object), on `time.perf_counter`'s clock."""

    def __init__(self, cluster: KubeCluster) -> None:
        self._api = k8s_config.new_client_from_config(str(cluster.kubeconfig))
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._deployments, daemon=True),
            threading.Thread(target=self._pods, daemon=True),
        ]

    def __enter__(self) -> Stopwatch:
        for thread in self._threads:
            thread.start()
        time.sleep(0.5)  # the watches are open before the request goes
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self._api.close()

    def _mark(self, step: str) -> None:
        self.seen.setdefault(step, time.perf_counter())

    def _stream(self, call: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        watch = k8s_watch.Watch(return_type="object")
        while not self._stop.is_set():
            for event in watch.stream(call, NAMESPACE, timeout_seconds=5, **kwargs):
                yield event["raw_object"]
                if self._stop.is_set():
                    break

    def _deployments(self) -> None:
        apps = k8s.AppsV1Api(self._api)
        for body in self._stream(
            apps.list_namespaced_deployment, field_selector=f"metadata.name={NAME}"
        ):
            if (body.get("spec") or {}).get("replicas", 0) >= 1:
                self._mark("decide")

    def _pods(self) -> None:
        core = k8s.CoreV1Api(self._api)
        selector = f"llm.modelserve.io/modelserve={NAME}"
        for pod in self._stream(core.list_namespaced_pod, label_selector=selector):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            status = pod.get("status") or {}
            if (pod.get("spec") or {}).get("nodeName"):
                self._mark("schedule")
            fetched = status.get("initContainerStatuses") or []
            if fetched and all((c.get("state") or {}).get("terminated") for c in fetched):
                self._mark("fetch")
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            if ready:
                self._mark("start")


def first_token(gateway: RunningService, token: str) -> float:
    """Seconds from sending a streamed chat to its first token; raises on any failure."""
    started = time.perf_counter()
    body = {
        "model": NAME,
        "stream": True,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "Say hi"}],
    }
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=600,
    ) as answer:
        if answer.status_code != 200:
            raise RuntimeError(f"{answer.status_code}: {answer.read()[:300]!r}")
        for line in answer.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(str(event["error"]))
            choices = event.get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                return time.perf_counter() - started
    raise RuntimeError("the stream ended without a token")


def asleep(cluster: KubeCluster) -> bool:
    found = cluster.get_json("ms", NAME, "-n", NAMESPACE).get("status") or {}
    pods = cluster.get_json("pods", "-n", NAMESPACE, "-l", f"llm.modelserve.io/modelserve={NAME}")
    return found.get("phase") == "Sleeping" and not pods["items"]


def hold_histogram(gateway: RunningService) -> tuple[float, float, dict[float, float]]:
    """(sum, count, cumulative buckets by upper bound) of the gateway's hold overhead."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    total = count = 0.0
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{HOLD_METRIC}_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{HOLD_METRIC}_count"):
            count += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{HOLD_METRIC}_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            upper = float("inf") if bound == "+Inf" else float(bound)
            buckets[upper] = buckets.get(upper, 0.0) + float(line.rsplit(" ", 1)[1])
    return total, count, buckets


def bucket_median(before: dict[float, float], after: dict[float, float]) -> str:
    """The smallest bucket bound under which half the new observations fall."""
    new = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
    total = new.get(float("inf"), 0.0)
    for bound in sorted(new):
        if total and new[bound] >= total / 2:
            return f"<= {bound * 1000:g} ms" if bound != float("inf") else "> largest bucket"
    return "no observation"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="copy the run's logs here")
    args = parser.parse_args()
    cold: list[dict[str, float]] = []
    warm: list[float] = []
    with scratch_folder("activation", args.keep) as folder, bed(folder) as found:
        before = hold_histogram(found.gateway)
        for _ in range(args.rounds):
            wait_for(lambda: asleep(found.cluster), timeout=300, what="the model to sleep")
            with Stopwatch(found.cluster) as watch:
                sent = time.perf_counter()
                total = first_token(found.gateway, found.token)
            marks = [sent, *(watch.seen.get(step, float("nan")) for step in STEPS[:-1])]
            marks.append(sent + total)
            cold.append({step: marks[i + 1] - marks[i] for i, step in enumerate(STEPS)})
            cold[-1]["total"] = total
            warm.append(first_token(found.gateway, found.token))
        after = hold_histogram(found.gateway)
    print(f"activation at {revision(ROOT)}, {args.rounds} rounds (seconds; p50 / max)")
    for step in (*STEPS, "total"):
        values = [round[step] for round in cold]
        print(f"  cold {step:<12} {statistics.median(values):8.3f} / {max(values):8.3f}")
    print(f"  warm first token   {statistics.median(warm):8.3f} / {max(warm):8.3f}")
    held = after[1] - before[1]
    mean = (after[0] - before[0]) / held if held else float("nan")
    print(
        f"  gateway hold overhead (Ready endpoint seen -> forwarded): {held:.0f} held requests, "
        f"mean {mean * 1000:.1f} ms, p50 {bucket_median(before[2], after[2])}"
    )
    print(f"  warm p90 {percentile(warm, 90):.3f}")


if __name__ == "__main__":
    main()
