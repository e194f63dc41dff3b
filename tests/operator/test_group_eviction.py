"""GPU-aware eviction counts every pod of a model spread over several nodes.

A replica of such a model is a group of spec.resources.nodes pods, each with
spec.resources.gpus GPUs, and the operator's pod index holds every pod of every group
(leader and workers carry the ModelServe's labels alike). The autoscaler counts GPUs per
pod from that index: a victim frees the GPUs of each of its placed pods, and a waiting
model needs those of each of its pods the scheduler could not place. Driven here through
the autoscaler's eviction step with a stand-in for the reconciler (its indexes, as kopf
fills them), on the pure choice of `plan_eviction`.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from modelserve.common.modelserve import ModelServe
from modelserve.common.timestamps import rfc3339
from modelserve.operator.autoscaling.autoscaler import Autoscaler
from modelserve.operator.autoscaling.decisions import EVICTED, NO_EVICTABLE, Key
from modelserve.operator.autoscaling.metrics import AutoscalerMetrics
from modelserve.operator.settings import OperatorSettings
from modelserve.operator.status import DeploymentView, PodView

NOW = 2_000_000.0
GPU_TYPE = "NVIDIA-H100-80GB-HBM3"
INSUFFICIENT = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
WAITING: Key = ("ns", "waiting")
# Woken a moment ago, its groups not placed yet.
WOKEN = {"desiredReplicas": 1, "activatedAt": rfc3339(NOW - 5)}
# Awake for an hour, idle for ten minutes: free to go.
IDLE_AWAKE = {
    "desiredReplicas": 1,
    "activatedAt": rfc3339(NOW - 3600),
    "lastRequestTime": rfc3339(NOW - 600),
}


def body(name: str, *, gpus: int, nodes: int | None, status: dict[str, Any]) -> dict[str, Any]:
    """An autoscaled vLLM ModelServe of `nodes` pods per replica (None: one pod)."""
    resources: dict[str, Any] = {"gpus": gpus, "gpuType": GPU_TYPE}
    if nodes is not None:
        resources["nodes"] = nodes
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {
            "runtime": "vllm",
            "model": {"uri": "s3://inference-models/models/m/"},
            "resources": resources,
            "autoscaling": {
                "minReplicas": 0,
                "maxReplicas": 1,
                "idleTimeoutSeconds": 3600,
                "minResidenceSeconds": 0,
            },
        },
        "status": status,
    }


def placed(name: str) -> PodView:
    return PodView(name, None, None, None, False, ready=True)


def short(name: str) -> PodView:
    return PodView(name, INSUFFICIENT, None, None, False)


class StandIn:
    """What the eviction step reads of the Reconciler: the pods, the Deployment or
    LeaderWorkerSet of a model (none Ready here), and the statuses to write."""

    def __init__(self) -> None:
        self.bodies: dict[Key, dict[str, Any]] = {}
        not_ready = [DeploymentView(1, 1, 1, 0, 1, False)]
        self.indexes = SimpleNamespace(
            modelserves=self.bodies,
            pods={},
            deployments={WAITING: not_ready},
            groups={WAITING: not_ready},
        )
        self.marked: set[Key] = set()
        self.statuses = SimpleNamespace(mark=self.marked.add)

    def add(self, found: dict[str, Any], pods: list[PodView]) -> None:
        key = (found["metadata"]["namespace"], found["metadata"]["name"])
        self.bodies[key] = found
        self.indexes.pods[key] = pods

    def parent(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.bodies.get((namespace, name))

    def workload(self, ms: ModelServe) -> DeploymentView | None:
        views = self.indexes.deployments.get((ms.namespace, ms.name))
        return views[0] if views else None


def scaler_for(stand_in: StandIn) -> tuple[Autoscaler, dict[Key, tuple[Any, ModelServe]]]:
    """An autoscaler that has seen every model of `stand_in`, and those models."""
    scaler = Autoscaler(OperatorSettings(), AutoscalerMetrics(), clock=lambda: NOW)
    models = {key: (found, ModelServe.from_body(found)) for key, found in stand_in.bodies.items()}
    for found, ms in models.values():
        scaler.state(ms, found["status"])
    return scaler, models


def make_room(stand_in: StandIn) -> Autoscaler:
    """The eviction step for the waiting model, as a pass runs it after scaling."""
    scaler, models = scaler_for(stand_in)
    parent, ms = models[WAITING]
    asyncio.run(scaler._make_room(cast(Any, stand_in), parent, ms, models, {}, NOW))
    return scaler


def waiting_group(stand_in: StandIn) -> None:
    """A 2-node model of 8 GPUs per node, woken, neither pod of its group placed."""
    waiting = body("waiting", gpus=8, nodes=2, status=WOKEN)
    stand_in.add(waiting, [short("waiting-0"), short("waiting-0-1")])


def test_a_victim_group_of_two_8_gpu_pods_frees_16_gpus() -> None:
    stand_in = StandIn()
    waiting_group(stand_in)
    group = body("group", gpus=8, nodes=2, status=IDLE_AWAKE)
    stand_in.add(group, [placed("group-0"), placed("group-0-1")])
    scaler, models = scaler_for(stand_in)

    candidates = scaler._candidates(cast(Any, stand_in), models[WAITING][1], models, {})
    assert [(c.key, c.gpus) for c in candidates] == [(("ns", "group"), 16)]

    scaler = make_room(stand_in)
    # Its 16 GPUs cover the waiting group's 16: it alone goes to sleep.
    assert scaler.states[WAITING].evicting == (("ns", "group"),)
    drain = scaler.states[("ns", "group")].drain
    assert drain is not None and drain.reason == EVICTED
    assert drain.for_model == WAITING


def test_a_group_short_on_both_pods_needs_16_gpus() -> None:
    stand_in = StandIn()
    waiting_group(stand_in)
    stand_in.add(body("one", gpus=8, nodes=None, status=IDLE_AWAKE), [placed("one-a")])

    scaler = make_room(stand_in)
    # One 8-GPU model is not enough: none goes (no GPU is freed for nothing).
    assert scaler.states[WAITING].evicting == ()
    assert scaler.states[("ns", "one")].drain is None
    assert scaler.states[WAITING].blocked == (
        NO_EVICTABLE,
        f"no GPU of type {GPU_TYPE} free: evicting every other model would free 8 of 16 GPUs",
    )

    stand_in.add(body("two", gpus=8, nodes=None, status=IDLE_AWAKE), [placed("two-a")])
    scaler = make_room(stand_in)
    # Two of them are: both go, for the two pods of the group.
    assert set(scaler.states[WAITING].evicting) == {("ns", "one"), ("ns", "two")}


def test_a_partly_placed_group_counts_the_pods_it_holds() -> None:
    """A victim group whose worker the scheduler has not placed holds one pod's GPUs; a
    waiting group whose leader found GPUs needs only its worker's."""
    stand_in = StandIn()
    waiting = body("waiting", gpus=8, nodes=2, status=WOKEN)
    stand_in.add(waiting, [placed("waiting-0"), short("waiting-0-1")])
    group = body("group", gpus=8, nodes=2, status=IDLE_AWAKE)
    stand_in.add(group, [placed("group-0"), short("group-0-1")])
    scaler, models = scaler_for(stand_in)

    candidates = scaler._candidates(cast(Any, stand_in), models[WAITING][1], models, {})
    assert [(c.key, c.gpus) for c in candidates] == [(("ns", "group"), 8)]
    assert make_room(stand_in).states[WAITING].evicting == (("ns", "group"),)
