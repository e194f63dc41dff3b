"""Set-active rollouts on the test bed, timed: a server's model replaced under a steady
stream of requests, and put back from a version that crashes.

    .venv/bin/python bench/rollout.py [--rounds 3] [--keep DIR]

The test bed's control plane runs two `llamacpp` ModelServes (SmolLM2-135M, pods that
really run `llama-server`): one with 2 replicas, one with 1. Each round changes a server's
model the way the gateway's `POST /models/set_active` does (spec.model.uri and the
version and rollout-id annotations) between two copies of the model in the platform
store, while one client sends chat requests one after another through the gateway. It
prints, per server size:

- roll: the change written → status.rollout Complete (every replica runs the new model,
  Ready): the operator's record, the Deployment's one-at-a-time replacement, each new
  pod's fetch and load;
- failed requests during the roll (the target: none), and the slowest request (with one
  replica, requests are held during the swap: that is the hold);

and, once per server size, a version whose weights are cut in half (llama.cpp fails to
load it): the change written → status.rollout RolledBack (detection), and → the server
Ready again on the previous version. Nothing asserts on any of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from modelserve.common.modelserve import OWNER_LABEL
from modelserve.common.rollouts import MODEL_VERSION_ANNOTATION, ROLLOUT_ANNOTATION
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.bench_bed import bench_bed
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.measuring import revision, scratch_folder
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import place_model_version
from modelserve.testbed.testing_loop import RequestStream

ROOT = Path(__file__).resolve().parents[1]
SECRET = "rollout-bench-secret-of-32-bytes!!!!!"
NAMESPACE = "default"
OWNER = "bench"


def status(cluster: KubeCluster, name: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.get_json("ms", name, "-n", NAMESPACE).get("status") or {}
    return found


def serve(cluster: KubeCluster, name: str, uri: str, version: str, replicas: int) -> None:
    body = {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {OWNER_LABEL: OWNER},
            "annotations": {MODEL_VERSION_ANNOTATION: version},
        },
        "spec": {
            "runtime": "llamacpp",
            "model": {"uri": uri, "format": "gguf", "servedName": name},
            "replicas": replicas,
            "args": ["--ctx-size", "1024", "--parallel", "2", "--threads", "1"],
        },
    }
    cluster.kubectl("apply", stdin=yaml.safe_dump(body))
    wait_for(
        lambda: (status(cluster, name).get("model") or {}).get("version") == version,
        timeout=300,
        what=f"{name} to run {version}",
    )


def change(cluster: KubeCluster, name: str, uri: str, version: str) -> tuple[str, float]:
    rollout_id = uuid.uuid4().hex[:8]
    patch = {
        "metadata": {
            "annotations": {MODEL_VERSION_ANNOTATION: version, ROLLOUT_ANNOTATION: rollout_id}
        },
        "spec": {"model": {"uri": uri}},
    }
    written = time.perf_counter()
    cluster.kubectl("patch", f"ms/{name}", "-n", NAMESPACE, "--type=merge", "-p", json.dumps(patch))
    return rollout_id, written


def ended(cluster: KubeCluster, name: str, rollout_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        rollout = status(cluster, name).get("rollout") or {}
        finished = rollout.get("id") == rollout_id and rollout.get("phase") != "Progressing"
        return rollout if finished else None

    return wait_for(done, timeout=600, interval=0.1, what=f"the rollout {rollout_id} to end")


def ready(cluster: KubeCluster, name: str, replicas: int) -> None:
    wait_for(
        lambda: (
            status(cluster, name).get("phase") == "Ready"
            and status(cluster, name).get("readyReplicas") == replicas
        ),
        timeout=600,
        interval=0.1,
        what=f"{name} to be Ready",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="copy the run's logs here")
    args = parser.parse_args()
    model = ensure_runtime().model
    lines = [f"rollout at {revision(ROOT)}, {args.rounds} rounds per size (seconds)"]
    with (
        scratch_folder("rollout", args.keep) as folder,
        bench_bed(
            folder, secret=SECRET, name="rollout", operator_settings={"OPERATOR_DRAIN_SECONDS": "2"}
        ) as bed,
    ):
        versions = {
            version: place_model_version(bed.store, model, version)
            for version in ("bench-v1", "bench-v2")
        }
        broken = place_model_version(
            bed.store, model, "bench-bad", keep_bytes=model.stat().st_size // 2
        )
        token = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET))).sign(OWNER)
        headers = {"Authorization": f"Bearer {token}"}
        for replicas in (2, 1):
            name = f"roll-{replicas}"
            serve(bed.cluster, name, versions["bench-v1"], "bench-v1", replicas)
            rolls: list[float] = []
            slowest: list[float] = []
            failures = 0
            for round_ in range(args.rounds):
                target = "bench-v2" if round_ % 2 == 0 else "bench-v1"
                with RequestStream(bed.gateway, name, headers) as stream:
                    rollout_id, written = change(bed.cluster, name, versions[target], target)
                    rollout = ended(bed.cluster, name, rollout_id)
                    rolls.append(time.perf_counter() - written)
                    assert rollout["phase"] == "Complete", rollout
                failures += len(stream.failures())
                slowest.append(max(stream.durations))
            with RequestStream(bed.gateway, name, headers) as stream:
                rollout_id, written = change(bed.cluster, name, broken, "bench-bad")
                rollout = ended(bed.cluster, name, rollout_id)
                detected = time.perf_counter() - written
                ready(bed.cluster, name, replicas)
                restored = time.perf_counter() - written
            lines += [
                f"  {replicas} replica(s): roll p50 {statistics.median(rolls):.2f} / max "
                f"{max(rolls):.2f}; failed requests {failures}; slowest request p50 "
                f"{statistics.median(slowest):.2f} / max {max(slowest):.2f}",
                f"    crashing version: {rollout['phase']} ({rollout['reason']}) after "
                f"{detected:.2f}; Ready on the previous version after {restored:.2f}; "
                f"failed requests {len(stream.failures())}; slowest request "
                f"{max(stream.durations):.2f}",
            ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
