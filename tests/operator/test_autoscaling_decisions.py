"""The autoscaler's pure decisions: activation and load scaling, idle sleep, the drain
fence, and the choice of models to evict for GPUs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import generate_latest

from modelserve.common.load_reports import (
    LOAD_ANNOTATION,
    LoadReport,
    ServerLoad,
    build_lease,
    report_from_lease,
)
from modelserve.common.modelserve import Autoscaling, ModelServe
from modelserve.common.timestamps import rfc3339
from modelserve.operator.autoscaling.autoscaler import DELETION_COST, Autoscaler, initial_state
from modelserve.operator.autoscaling.decisions import (
    NO_EVICTABLE,
    WAITING_FOR_EVICTION,
    Candidate,
    Drain,
    DrainOutcome,
    Key,
    LoadWindow,
    PodDrain,
    PodDrainOutcome,
    PodLoad,
    drain_outcome,
    idle_seconds,
    initial_replicas,
    plan_eviction,
    pod_drain_outcome,
    pod_drain_released,
    pods_to_drain,
    scaled_replicas,
    should_sleep,
)
from modelserve.operator.autoscaling.metrics import AutoscalerMetrics
from modelserve.operator.autoscaling.reports import LoadReports, follow_leases
from modelserve.operator.settings import OperatorSettings
from modelserve.operator.status import DeploymentView, PodView, compute_status

NOW = 1_000_000.0
UID = "uid-a"


def report(
    name: str,
    *,
    load: ServerLoad | None = None,
    ack: str | None = None,
    renewed: float = NOW,
) -> LoadReport:
    return LoadReport(
        replica=name,
        renewed=renewed,
        duration=10,
        servers={UID: load} if load else {},
        draining={UID: ack} if ack else {},
    )


# Scaling down waits a window after the last change: long past here.
LONG_AGO = NOW - 3600
DRAIN = Drain(token="t1", reason="Idle", message="idle for 60 s", since=NOW - 1)


def test_a_drain_is_done_once_every_live_replica_acknowledged_with_nothing_pending() -> None:
    reports = [report("a", ack="t1"), report("b", ack="t1", load=ServerLoad(last_used=NOW - 90))]
    assert drain_outcome(DRAIN, UID, reports, NOW, 5) is DrainOutcome.DONE


def test_a_drain_waits_for_the_replicas_that_have_not_acknowledged_yet() -> None:
    reports = [report("a", ack="t1"), report("b")]
    assert drain_outcome(DRAIN, UID, reports, NOW, 5) is DrainOutcome.WAIT


def test_a_drain_whose_acknowledgements_do_not_all_come_is_cancelled() -> None:
    reports = [report("a", ack="t1"), report("b", ack="an-older-token")]
    assert drain_outcome(DRAIN, UID, reports, NOW + 8, 5) is DrainOutcome.CANCEL


def test_a_request_held_or_in_flight_after_the_acknowledgement_cancels_the_drain() -> None:
    for load in (ServerLoad(held=1), ServerLoad(in_flight=1)):
        reports = [report("a", ack="t1"), report("b", ack="t1", load=load)]
        assert drain_outcome(DRAIN, UID, reports, NOW, 5) is DrainOutcome.CANCEL


def test_dead_replicas_do_not_count_for_the_drain() -> None:
    dead = report("dead", load=ServerLoad(in_flight=3), renewed=NOW - 60)
    assert drain_outcome(DRAIN, UID, [report("a", ack="t1"), dead], NOW, 5) is DrainOutcome.DONE
    assert drain_outcome(DRAIN, UID, [], NOW, 5) is DrainOutcome.DONE


def test_the_first_replicas_are_spec_replicas_within_min_and_max() -> None:
    scaling = Autoscaling(min_replicas=1, max_replicas=3)
    assert [initial_replicas(n, scaling) for n in (0, 2, 9)] == [1, 2, 3]


def test_load_scales_up_at_once_and_down_only_with_the_window_average() -> None:
    scaling = Autoscaling(min_replicas=1, max_replicas=4, target_requests=2)
    assert (
        scaled_replicas(1, load=5, average=1.0, autoscaling=scaling, now=NOW, changed_at=LONG_AGO)
        == 3
    )
    assert (
        scaled_replicas(1, load=50, average=1.0, autoscaling=scaling, now=NOW, changed_at=LONG_AGO)
        == 4
    )  # max
    # The load fell, the window still remembers it: no flapping down.
    assert (
        scaled_replicas(3, load=0, average=5.0, autoscaling=scaling, now=NOW, changed_at=LONG_AGO)
        == 3
    )
    assert (
        scaled_replicas(3, load=0, average=2.5, autoscaling=scaling, now=NOW, changed_at=LONG_AGO)
        == 2
    )
    assert (
        scaled_replicas(3, load=0, average=0.0, autoscaling=scaling, now=NOW, changed_at=LONG_AGO)
        == 1
    )


def test_load_scaling_keeps_one_replica_with_min_zero_and_never_wakes_a_sleeper() -> None:
    scaling = Autoscaling(min_replicas=0, max_replicas=2, target_requests=1)
    assert (
        scaled_replicas(2, load=0, average=0.0, autoscaling=scaling, now=NOW, changed_at=LONG_AGO)
        == 1
    )
    assert (
        scaled_replicas(0, load=3, average=3.0, autoscaling=scaling, now=NOW, changed_at=LONG_AGO)
        == 0
    )


def test_a_gpu_cap_holds_scale_ups_back() -> None:
    scaling = Autoscaling(min_replicas=1, max_replicas=4, target_requests=1)
    assert (
        scaled_replicas(
            1, load=4, average=4.0, autoscaling=scaling, cap=2, now=NOW, changed_at=LONG_AGO
        )
        == 2
    )


def test_the_window_keeps_only_its_seconds() -> None:
    window = LoadWindow()
    for offset, load in ((0, 8), (30, 4), (61, 0)):
        window.add(NOW + offset, load, 60)
    assert window.average() == 2.0


def test_an_idle_model_sleeps_unless_pinned_busy_min_above_zero_or_recent() -> None:
    scaling = Autoscaling(min_replicas=0, max_replicas=1, idle_timeout_seconds=60)
    assert should_sleep(scaling, 1, busy=False, idle=61)
    assert not should_sleep(scaling, 1, busy=False, idle=59)
    assert not should_sleep(scaling, 1, busy=True, idle=600)
    assert not should_sleep(scaling.model_copy(update={"pinned": True}), 1, False, 600)
    assert not should_sleep(scaling.model_copy(update={"min_replicas": 1}), 1, False, 600)
    assert not should_sleep(scaling, 0, busy=False, idle=600)


def test_idleness_counts_from_the_last_request_else_the_activation() -> None:
    assert idle_seconds(NOW - 30, NOW - 100, None, NOW) == 30
    assert idle_seconds(0.0, NOW - 100, None, NOW) == 100


def candidate(name: str, **changes: object) -> Candidate:
    fields: dict[str, object] = {
        "key": ("ns", name),
        "gpus": 1,
        "pinned": False,
        "priority": 0,
        "busy": False,
        "activated_at": NOW - 3600,
        "last_used": NOW - 600,
        "min_residence_seconds": 120,
    }
    fields.update(changes)
    return Candidate(**fields)  # type: ignore[arg-type]


def plan(*candidates: Candidate, needed: int = 1, priority: int = 0):  # type: ignore[no-untyped-def]
    return plan_eviction(
        namespace="ns",
        gpu_type="NVIDIA-L4",
        priority=priority,
        needed=needed,
        candidates=candidates,
        now=NOW,
    )


def test_the_least_recently_used_model_is_evicted_first() -> None:
    found = plan(candidate("new", last_used=NOW - 10), candidate("old", last_used=NOW - 900))
    assert found.victims == (("ns", "old"),)


def test_enough_models_are_evicted_to_cover_the_gpus_needed() -> None:
    found = plan(
        candidate("a", last_used=NOW - 10),
        candidate("b", last_used=NOW - 20),
        candidate("c", last_used=NOW - 30),
        needed=2,
    )
    assert found.victims == (("ns", "c"), ("ns", "b"))
    assert plan(candidate("big", gpus=4), needed=3).victims == (("ns", "big"),)


def test_pinned_and_higher_priority_models_are_never_evicted() -> None:
    found = plan(candidate("a", pinned=True), candidate("b", priority=5), priority=1)
    assert found.victims == ()
    assert found.blocked == NO_EVICTABLE
    assert "a is pinned" in found.message
    assert "b has priority 5 above 1" in found.message
    assert found.message.startswith("no GPU of type NVIDIA-L4 free")


def test_same_priority_may_be_evicted() -> None:
    assert plan(candidate("a", priority=3), priority=3).victims == (("ns", "a"),)


def test_busy_or_recently_woken_models_make_the_waiting_model_wait() -> None:
    found = plan(candidate("a", busy=True), candidate("b", activated_at=NOW - 30))
    assert found.victims == ()
    assert found.blocked == WAITING_FOR_EVICTION
    assert "a has requests in flight or held" in found.message
    assert "b woke 30 s ago (minimum residence 120 s)" in found.message


def test_too_few_gpus_even_with_every_model_evicted_is_no_evictable_model() -> None:
    found = plan(candidate("a", busy=True), candidate("b"), needed=4)
    assert found.blocked == NO_EVICTABLE
    assert "2 of 4" in found.message
    assert plan(needed=1).blocked == NO_EVICTABLE


def test_only_what_covers_the_need_is_evicted_or_nothing() -> None:
    # One free candidate is not enough and the other is busy: evicting one alone would
    # free a GPU for nothing.
    found = plan(candidate("a"), candidate("b", busy=True), needed=2)
    assert found.victims == ()
    assert found.blocked == WAITING_FOR_EVICTION


# --- scaling down waits a window after a change (no flapping) -------------------------


def test_a_burst_after_a_quiet_window_scales_up_once_and_does_not_flap() -> None:
    """60 s of no load, then a steady 8: the window's quiet samples must not undo the
    scale-up at every other pass (they did: 1, 2, 1, 2, …)."""
    scaling = Autoscaling(min_replicas=1, max_replicas=3, target_requests=4, window_seconds=60)
    window, desired, changed_at = LoadWindow(), 1, NOW - 3600
    seen: list[int] = []
    for second in range(300):
        now = NOW + second
        load = 8 if 60 <= second < 200 else 0
        window.add(now, load, scaling.window_seconds)
        found = scaled_replicas(
            desired, load, window.average(), scaling, now=now, changed_at=changed_at
        )
        if found > desired:
            changed_at = now
        desired = found
        seen.append(desired)
    assert set(seen[60:200]) == {2}  # up once, and it stays up while the load lasts
    assert seen[-1] == 1  # down once the window is quiet again


def test_no_scale_down_within_a_window_of_the_last_change() -> None:
    scaling = Autoscaling(min_replicas=1, max_replicas=3, target_requests=1, window_seconds=60)
    assert (
        scaled_replicas(3, load=0, average=0.0, autoscaling=scaling, now=NOW, changed_at=NOW - 30)
        == 3
    )
    # Up is never held back.
    assert (
        scaled_replicas(1, load=3, average=0.0, autoscaling=scaling, now=NOW, changed_at=NOW - 30)
        == 3
    )


def test_after_a_restart_a_window_of_one_sample_scales_nothing_down() -> None:
    found = initial_state(
        autoscaled_model("m", min_replicas=1, max_replicas=3),
        {"desiredReplicas": 3, "activatedAt": rfc3339(NOW - 3600)},
        NOW,
    )
    assert (found.desired, found.changed_at) == (3, NOW)
    found.window.add(NOW, 0, 60)
    scaling = Autoscaling(min_replicas=1, max_replicas=3, window_seconds=60)
    held = scaled_replicas(3, 0, found.window.average(), scaling, now=NOW, changed_at=NOW)
    assert held == 3


# --- minReplicas holds while awake ---------------------------------------------------


def test_an_awake_model_keeps_at_least_min_replicas() -> None:
    scaling = Autoscaling(min_replicas=3, max_replicas=4)
    assert (
        scaled_replicas(1, load=0, average=0.0, autoscaling=scaling, now=NOW, changed_at=LONG_AGO)
        == 3
    )
    # Even while a GPU cap holds scale-ups back.
    assert (
        scaled_replicas(
            1, load=0, average=0.0, autoscaling=scaling, cap=1, now=NOW, changed_at=LONG_AGO
        )
        == 3
    )


def test_the_state_read_back_from_the_status_is_clamped_into_min_and_max() -> None:
    ms = autoscaled_model("m", min_replicas=2, max_replicas=3)
    for written, expected in ((1, 2), (5, 3), (2, 2)):
        status = {"desiredReplicas": written, "activatedAt": rfc3339(NOW - 60)}
        assert initial_state(ms, status, NOW).desired == expected


# --- models with minReplicas above 0 are never evicted -------------------------------


def test_a_model_that_keeps_min_replicas_is_never_a_victim() -> None:
    found = plan(candidate("a", min_replicas=1, last_used=NOW - 9000))
    assert found.victims == ()
    assert found.blocked == NO_EVICTABLE
    assert "a keeps minReplicas 1" in found.message
    assert plan(candidate("a", min_replicas=1), candidate("b")).victims == (("ns", "b"),)


# --- other tenants are never named -----------------------------------------------------


def test_eviction_messages_name_models_of_the_readers_namespace_only() -> None:
    found = plan(
        candidate("mine", pinned=True),
        candidate("x", key=("team-x", "secret-x"), pinned=True),
        candidate("y", key=("team-y", "secret-y"), pinned=True),
        candidate("z", key=("team-z", "secret-z"), busy=True),
        needed=2,
    )
    assert found.blocked == NO_EVICTABLE
    assert "mine is pinned" in found.message
    assert "2 models in other namespaces are pinned" in found.message
    assert "a model in another namespace has requests in flight or held" in found.message
    for secret in ("team-x", "team-y", "team-z", "secret-"):
        assert secret not in found.message


# --- the autoscaler's passes, with a stand-in for the reconciler ------------------------

SETTINGS = OperatorSettings()
INSUFFICIENT = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."


def autoscaled_model(
    name: str, namespace: str = "ns", *, status: dict[str, Any] | None = None, **scaling: Any
) -> ModelServe:
    return ModelServe.from_body(body(name, namespace, status=status, **scaling))


def body(
    name: str, namespace: str = "ns", *, status: dict[str, Any] | None = None, **scaling: Any
) -> dict[str, Any]:
    wire = {
        "minReplicas": scaling.pop("min_replicas", 0),
        "maxReplicas": scaling.pop("max_replicas", 1),
        **scaling,
    }
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
        "spec": {
            "runtime": "vllm",
            "model": {"uri": "s3://models/m/"},
            "resources": {"gpus": 1, "gpuType": "NVIDIA-L4"},
            "autoscaling": wire,
        },
        "status": status or {},
    }


class StandIn:
    """What the autoscaler uses of the Reconciler: indexes, parents, writes and Events."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.bodies = {(b["metadata"]["namespace"], b["metadata"]["name"]): b for b in bodies}
        self.indexes = SimpleNamespace(modelserves=self.bodies, deployments={}, pods={})
        self.refusals: dict[Key, Any] = {}
        self.marked: set[Key] = set()
        self.statuses = SimpleNamespace(mark=self.marked.add)
        self.cluster = self
        self.events: list[tuple[Key, str, str]] = []
        self.on_event: Callable[[Key, str], None] = lambda key, reason: None
        self.failing: set[Key] = set()
        self.annotated: list[tuple[str, dict[str, str]]] = []

    def parent(self, namespace: str, name: str) -> Any:
        return self.bodies.get((namespace, name))

    def lock(self, key: Key) -> asyncio.Lock:
        return asyncio.Lock()

    def workload(self, ms: ModelServe) -> DeploymentView | None:
        found: list[DeploymentView] = self.indexes.deployments.get((ms.namespace, ms.name), [])
        return next(iter(found), None)

    async def apply(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if (meta["namespace"], meta["name"]) in self.failing:
            raise RuntimeError("something unexpected")

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.annotated.append((name, annotations))

    async def post_event(self, involved: Any, kind: str, reason: str, message: str) -> None:
        key = (involved["metadata"]["namespace"], involved["metadata"]["name"])
        self.events.append((key, reason, message))
        self.on_event(key, reason)

    def running(self, key: Key, ready: int, pods: list[PodView]) -> None:
        self.indexes.deployments[key] = [DeploymentView(1, 1, len(pods), ready, len(pods), False)]
        self.indexes.pods[key] = pods


def pod(name: str, unschedulable: str | None = None) -> PodView:
    return PodView(name, unschedulable, None, None, False)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def autoscaler(clock: Clock) -> Autoscaler:
    return Autoscaler(SETTINGS, AutoscalerMetrics(), clock=clock)


def step(scaler: Autoscaler, stand_in: StandIn) -> None:
    asyncio.run(scaler.step(cast(Any, stand_in)))


def lease(
    name: str, renewed: float, servers: dict[str, ServerLoad] | None = None
) -> dict[str, Any]:
    found = build_lease(LoadReport(name, renewed, 10, servers or {}), "gw")
    found["metadata"]["resourceVersion"] = str(renewed)
    return found


AWAKE = {"desiredReplicas": 1, "activatedAt": rfc3339(NOW - 3600)}
ASLEEP = {"desiredReplicas": 0, "activatedAt": rfc3339(NOW - 3600), "phase": "Sleeping"}


def test_a_last_use_from_a_gateway_clock_ahead_does_not_keep_a_model_awake() -> None:
    clock = Clock()
    scaler = autoscaler(clock)
    stand_in = StandIn(body("m", status=AWAKE, idle_timeout_seconds=60))
    stand_in.running(("ns", "m"), 1, [pod("m-0")])
    ahead = {"uid-ns-m": ServerLoad(last_used=NOW + 86_400)}  # a day ahead
    scaler.reports.update("ADDED", lease("gw-1", NOW, ahead))
    step(scaler, stand_in)
    assert scaler.states[("ns", "m")].last_used == NOW
    clock.now = NOW + 61
    scaler.reports.update("DELETED", lease("gw-1", NOW))
    step(scaler, stand_in)
    drain = scaler.states[("ns", "m")].drain
    assert drain is not None and drain.reason == "Idle"


def test_one_models_failure_stops_no_other() -> None:
    scaler = autoscaler(Clock())
    stand_in = StandIn(body("a", status=ASLEEP), body("b", status=ASLEEP))
    for key in (("ns", "a"), ("ns", "b")):
        stand_in.running(key, 0, [])
    stand_in.failing.add(("ns", "a"))
    held = {"uid-ns-a": ServerLoad(held=1), "uid-ns-b": ServerLoad(held=1)}
    scaler.reports.update("ADDED", lease("gw-1", NOW, held))
    step(scaler, stand_in)
    assert scaler.states[("ns", "b")].desired == 1
    assert (("ns", "b"), "Activated") in {(key, reason) for key, reason, _ in stand_in.events}


def test_a_model_deleted_during_a_pass_is_skipped_and_not_brought_back() -> None:
    scaler = autoscaler(Clock())
    stand_in = StandIn(body("a", status=ASLEEP))
    stand_in.running(("ns", "a"), 0, [])

    def deleted(key: Key, reason: str) -> None:
        del stand_in.bodies[key]
        scaler.forget(key)

    stand_in.on_event = deleted  # the ModelServe goes while its Activated Event is posted
    scaler.reports.update("ADDED", lease("gw-1", NOW, {"uid-ns-a": ServerLoad(held=1)}))
    step(scaler, stand_in)
    assert ("ns", "a") not in scaler.states


def evicting(waiting_ns: str, victim_ns: str) -> tuple[Autoscaler, StandIn, Clock]:
    """`waiting` (woken, its pod short of a GPU) and `victim` (idle, on the GPU)."""
    clock = Clock()
    scaler = autoscaler(clock)
    waiting_status = {"desiredReplicas": 1, "activatedAt": rfc3339(NOW - 5)}
    victim_status = {**AWAKE, "lastRequestTime": rfc3339(NOW - 600)}
    stand_in = StandIn(
        body("waiting", waiting_ns, status=waiting_status),
        body(
            "victim",
            victim_ns,
            status=victim_status,
            idle_timeout_seconds=3600,
            min_residence_seconds=0,
        ),
    )
    stand_in.running((waiting_ns, "waiting"), 0, [pod("w-0", INSUFFICIENT)])
    stand_in.running((victim_ns, "victim"), 1, [pod("v-0")])
    scaler.reports.update(
        "ADDED", lease("gw-1", NOW, {f"uid-{waiting_ns}-waiting": ServerLoad(held=1)})
    )
    return scaler, stand_in, clock


def test_an_eviction_across_namespaces_names_neither_model_to_the_other() -> None:
    scaler, stand_in, _ = evicting("team-b", "team-a")
    step(scaler, stand_in)
    victim = scaler.states[("team-a", "victim")]
    waiting = scaler.states[("team-b", "waiting")]
    assert victim.drain is not None
    assert victim.drain.message == "evicted to make room for a model in another namespace"
    assert waiting.blocked == (
        "WaitingForEviction",
        "no GPU of type NVIDIA-L4 free: putting a model in another namespace to sleep to make room",
    )
    assert victim.desired == 1  # until the gateway replica acknowledges the drain
    held = {"uid-team-b-waiting": ServerLoad(held=1)}
    acknowledged = LoadReport("gw-1", NOW, 10, held, {"uid-team-a-victim": victim.drain.token})
    scaler.reports.update("MODIFIED", build_lease(acknowledged, "gw"))
    step(scaler, stand_in)
    assert victim.desired == 0
    events = {(key, reason): message for key, reason, message in stand_in.events}
    evicted = events[(("team-a", "victim"), "Evicted")]
    for_this = events[(("team-b", "waiting"), "EvictedForThis")]
    assert for_this == "a model in another namespace was put to sleep to free its GPUs"
    assert "another namespace" in evicted
    for text in (evicted, for_this, victim.sleep_message, waiting.blocked[1]):
        assert "team-" not in text
        assert "waiting" not in text and "victim" not in text


def test_an_eviction_in_one_namespace_names_the_models() -> None:
    scaler, stand_in, _ = evicting("ns", "ns")
    step(scaler, stand_in)
    victim = scaler.states[("ns", "victim")]
    assert victim.drain is not None
    assert victim.drain.message == "evicted to make room for waiting"
    assert "putting victim to sleep" in (scaler.states[("ns", "waiting")].blocked or ("", ""))[1]


# --- load reports: the operator's clock, malformed Leases -------------------------------


def test_a_report_is_live_by_the_operators_clock_whatever_the_gateways() -> None:
    clock = Clock()
    reports = LoadReports(lambda: None, clock)
    reports.update("ADDED", lease("behind", NOW - 3600))  # its clock an hour behind
    reports.update("ADDED", lease("ahead", NOW + 3600))  # an hour ahead
    assert all(found.live(NOW) for found in reports.all())
    clock.now = NOW + 11  # no renewal for longer than the Lease's 10 s
    assert not any(found.live(clock.now) for found in reports.all())


def test_a_relist_keeps_when_an_unchanged_lease_was_received_and_old_ones_are_forgotten() -> None:
    clock = Clock()
    reports = LoadReports(lambda: None, clock)
    reports.replace([lease("a", NOW - 3600 * 24)])  # left by a replica that died long ago
    assert not any(found.live(NOW) for found in reports.all())
    reports.replace([lease("b", NOW)])
    clock.now = NOW + 30
    reports.replace([lease("b", NOW)])  # the same version: not renewed since
    assert not any(found.live(clock.now) for found in reports.all())
    clock.now = NOW + 3600
    assert reports.all() == []  # expired long ago: forgotten
    reports.replace([lease("c", NOW)])
    reports.update("DELETED", lease("c", NOW))
    assert reports.all() == []


def test_a_malformed_lease_is_skipped_and_the_watch_goes_on() -> None:
    reports = LoadReports(lambda: None, Clock())
    good = lease("good", NOW)

    class Cluster:
        async def list_objects(self, *args: Any) -> dict[str, Any]:
            return {"items": [{"metadata": "garbage"}], "metadata": {"resourceVersion": "1"}}

        async def watch(self, *args: Any) -> AsyncIterator[dict[str, Any]]:
            for event in (
                {"type": "MODIFIED", "object": {"metadata": "garbage"}},
                {"type": "MODIFIED", "object": {"metadata": {"name": 5, "labels": []}}},
                {"type": "ADDED", "object": "not an object"},
                {"type": "ADDED", "object": good},
            ):
                yield event
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(follow_leases(cast(Any, Cluster()), "gw", reports))
    assert [found.replica for found in reports.all()] == ["good"]


# --- leftovers of spec.autoscaling --------------------------------------------------------


def test_removing_spec_autoscaling_removes_its_status_fields() -> None:
    found = body("m", status={})
    del found["spec"]["autoscaling"]
    ms = ModelServe.from_body(found)
    previous = {
        "drain": {"token": "t", "reason": "Idle", "message": "idle", "since": rfc3339(NOW)},
        "activatedAt": rfc3339(NOW - 60),
        "lastRequestTime": rfc3339(NOW - 30),
    }
    deployment = DeploymentView(1, 1, 1, 1, 1, False)
    status = compute_status(ms, SETTINGS, deployment=deployment, pods=[], previous=previous)
    assert {field: status[field] for field in previous} == dict.fromkeys(previous)
    fresh = compute_status(ms, SETTINGS, deployment=deployment, pods=[], previous={})
    assert not set(previous) & set(fresh)


def test_a_deleted_models_metric_series_go_with_it() -> None:
    scaler = autoscaler(Clock())
    scaler.metrics.activations.labels("ns", "m").inc()
    scaler.metrics.loaded_seconds.labels("ns", "m").inc(5)
    scaler.forget(("ns", "m"))
    text = generate_latest(scaler.metrics.registry).decode()
    assert 'name="m"' not in text


# --- The pod drain fence: which replicas go when a model scales down, and when --------


def test_the_pods_that_go_are_the_least_busy_ready_ones_newest_first() -> None:
    pods = [
        PodLoad("old-idle", True, NOW - 100),
        PodLoad("new-idle", True, NOW - 10),
        PodLoad("busy", True, NOW - 1, in_flight=1),
    ]
    assert pods_to_drain(pods, 1) == ("new-idle",)
    assert pods_to_drain(pods, 2) == ("new-idle", "old-idle")
    assert pods_to_drain(pods, 3) == ("new-idle", "old-idle", "busy")


def test_no_fence_when_pods_not_ready_go_first_anyway_or_too_few_are_ready() -> None:
    starting = [PodLoad("ready", True, NOW, in_flight=2), PodLoad("starting", False, NOW)]
    assert pods_to_drain(starting, 1) is None  # the ReplicaSet removes the starting one
    assert pods_to_drain([PodLoad("a", True, NOW)], 2) is None
    assert pods_to_drain([PodLoad("a", True, NOW)], 0) is None


def pod_report(
    replica: str,
    ack: str | None = "t",
    pods: dict[str, int] | None = None,
    renewed: float = NOW,
) -> LoadReport:
    load = ServerLoad(in_flight=sum((pods or {}).values()), pods=pods or {})
    acknowledged = {UID: ack} if ack else {}
    return LoadReport(replica, renewed, 10, {UID: load}, pod_draining=acknowledged)


def outcome(
    drain: PodDrain,
    reports: list[LoadReport],
    *,
    now: float = NOW,
    wanted: int = 1,
    ready: tuple[str, ...] = ("p-0", "p-1"),
) -> tuple[PodDrainOutcome, PodDrain]:
    return pod_drain_outcome(
        drain,
        UID,
        reports,
        desired=2,
        wanted=wanted,
        ready_pods=ready,
        now=now,
        ack_seconds=5,
        drain_seconds=300,
    )


FENCE = PodDrain("t", ("p-1",), NOW)


def test_a_pod_drain_waits_for_every_ack_and_then_for_the_requests_on_its_pods() -> None:
    other_pod_busy = pod_report("gw-b", pods={"p-0": 3})
    assert outcome(FENCE, [pod_report("gw-a"), pod_report("gw-b", ack=None)])[0] == "wait"
    assert outcome(FENCE, [pod_report("gw-a"), other_pod_busy])[0] == "done"

    # A request on the pod that goes, from before the fence: wait, never cancel.
    def busy(at: float) -> list[LoadReport]:
        return [pod_report(gw, pods={"p-1": 1}, renewed=at) for gw in ("gw-a", "gw-b")]

    result, acknowledged = outcome(FENCE, busy(NOW))
    assert result == "wait" and acknowledged.acknowledged_at == NOW
    assert outcome(acknowledged, busy(NOW + 299), now=NOW + 299)[0] == "wait"
    assert outcome(acknowledged, busy(NOW + 301), now=NOW + 301)[0] == "overdue"
    # A dead replica's report counts neither for the ack nor for the requests.
    dead = pod_report("gw-c", ack=None, pods={"p-1": 1}, renewed=NOW - 60)
    assert outcome(FENCE, [pod_report("gw-a"), dead])[0] == "done"
    assert outcome(FENCE, [])[0] == "done"


def test_a_pod_drain_is_cancelled_by_load_by_a_missing_ack_and_a_pod_gone() -> None:
    assert outcome(FENCE, [pod_report("gw-a")], wanted=2)[0] == "cancel-load"
    late = [pod_report("gw-a", ack=None)]
    assert outcome(FENCE, late, now=NOW + 4)[0] == "wait"
    assert outcome(FENCE, late, now=NOW + 6)[0] == "cancel-ack"
    assert outcome(FENCE, [pod_report("gw-a", ack="older")], now=NOW + 6)[0] == "cancel-ack"
    assert outcome(FENCE, [pod_report("gw-a")], ready=("p-0",))[0] == "gone"


def test_a_lowered_pod_drain_ends_when_its_pods_terminate_or_after_a_grace() -> None:
    lowered = PodDrain("t", ("p-1",), NOW, lowered_at=NOW)
    assert not pod_drain_released(lowered, {"p-0", "p-1"}, NOW + 1, 40)
    assert pod_drain_released(lowered, {"p-0"}, NOW + 1, 40)
    assert pod_drain_released(lowered, {"p-0", "p-1"}, NOW + 41, 40)


def test_a_pod_drain_round_trips_through_the_status_and_the_lease() -> None:
    found = PodDrain.from_status(FENCE.to_status(), NOW + 5)
    assert found == PodDrain("t", ("p-1",), NOW + 5)
    assert PodDrain.from_status({"token": "t", "pods": []}, NOW) is None
    lease = build_lease(pod_report("gw-a", pods={"p-1": 2}), "gw")
    report = report_from_lease(lease)
    assert report is not None
    assert report.pod_draining == {UID: "t"}
    assert report.servers[UID].pods == {"p-1": 2}
    old = {"servers": {UID: {"inFlight": 1, "held": 0, "lastUsed": 0}}, "draining": {}}
    lease["metadata"]["annotations"][LOAD_ANNOTATION] = json.dumps(old)
    report = report_from_lease(lease)
    assert report is not None and report.pod_draining == {} and report.servers[UID].pods == {}


def ready_pod(name: str, created: float) -> PodView:
    return PodView(name, None, None, None, False, ready=True, created=created)


def scaled_down(
    reports: list[dict[str, Any]],
) -> tuple[Autoscaler, StandIn, Clock]:
    """A model at 2 replicas whose load, 60 s after its last change, wants 1."""
    clock = Clock()
    scaler = autoscaler(clock)
    status = {"desiredReplicas": 2, "activatedAt": rfc3339(NOW - 3600)}
    stand_in = StandIn(
        body(
            "m", status=status, min_replicas=1, max_replicas=2, target_requests=1, window_seconds=5
        )
    )
    stand_in.running(("ns", "m"), 2, [ready_pod("m-old", NOW - 200), ready_pod("m-new", NOW - 100)])
    for found in reports:
        scaler.reports.update("ADDED", found)
    step(scaler, stand_in)  # first sight: the window starts
    clock.now = NOW + 60
    return scaler, stand_in, clock


def pod_lease(
    replica: str, renewed: float, ack: str | None, pods: dict[str, int]
) -> dict[str, Any]:
    load = {"uid-ns-m": ServerLoad(in_flight=sum(pods.values()), pods=pods)}
    acknowledged = {"uid-ns-m": ack} if ack else {}
    found = build_lease(LoadReport(replica, renewed, 10, load, pod_draining=acknowledged), "gw")
    found["metadata"]["resourceVersion"] = f"{replica}-{renewed}-{ack}"
    return found


def test_scaling_down_drains_the_idle_pod_and_marks_it_to_go_first() -> None:
    """2 -> 1 with one long request on the older pod: the newer, idle pod is fenced; the
    Deployment stays at 2 until the gateway acknowledged, then that pod gets the lowest
    deletion cost and the Deployment goes to 1; the fence stays until the pod terminates."""
    scaler, stand_in, clock = scaled_down([pod_lease("gw-a", NOW, None, {"m-old": 1})])
    state = scaler.states[("ns", "m")]
    scaler.reports.update("ADDED", pod_lease("gw-a", clock.now, None, {"m-old": 1}))
    step(scaler, stand_in)
    assert state.pod_drain is not None and state.pod_drain.pods == ("m-new",)
    assert state.desired == 2 and stand_in.annotated == []
    token = state.pod_drain.token

    scaler.reports.update("ADDED", pod_lease("gw-a", clock.now, token, {"m-old": 1}))
    step(scaler, stand_in)
    assert stand_in.annotated == [("m-new", {DELETION_COST: "-1000"})]
    assert state.desired == 1
    assert state.pod_drain is not None and state.pod_drain.lowered_at == clock.now
    view = scaler.view(ModelServe.from_body(stand_in.bodies[("ns", "m")]), None)
    assert view is not None and view.pod_drain is not None and view.pod_drain.pods == ("m-new",)

    stand_in.indexes.pods[("ns", "m")] = [ready_pod("m-old", NOW - 200)]
    step(scaler, stand_in)
    after = scaler.states[("ns", "m")]
    assert after.pod_drain is None and after.desired == 1


def test_a_pod_drain_not_acknowledged_in_time_keeps_the_replicas() -> None:
    scaler, stand_in, clock = scaled_down([pod_lease("gw-a", NOW, None, {})])
    state = scaler.states[("ns", "m")]
    scaler.reports.update("ADDED", pod_lease("gw-a", clock.now, None, {"m-old": 1}))
    step(scaler, stand_in)
    assert state.pod_drain is not None
    clock.now += SETTINGS.drain_ack_seconds + 1
    scaler.reports.update("ADDED", pod_lease("gw-a", clock.now, None, {"m-old": 1}))
    step(scaler, stand_in)
    assert state.desired == 2 and stand_in.annotated == []


def group_pod(name: str, group: int, worker: int) -> PodView:
    """A pod of a LeaderWorkerSet group, Ready; the leader is worker 0."""
    return PodView(
        name, None, None, None, False, ready=True, created=NOW - 100, group=group, worker=worker
    )


def test_a_model_over_several_nodes_fences_the_leader_of_its_highest_group() -> None:
    """2 groups -> 1: LeaderWorkerSet removes group 1, so its leader is fenced (even while
    it holds the only request, unlike a Deployment's least loaded pod) and no pod gets a
    deletion cost (a StatefulSet does not read it)."""
    clock = Clock()
    scaler = autoscaler(clock)
    found = body(
        "m",
        status={"desiredReplicas": 2, "activatedAt": rfc3339(NOW - 3600)},
        min_replicas=1, max_replicas=2, target_requests=1, window_seconds=5,
    )  # fmt: skip
    found["spec"]["resources"] = {"gpus": 8, "nodes": 2}
    stand_in = StandIn(found)
    pods = [group_pod(f"m-{g}{'' if w == 0 else f'-{w}'}", g, w) for g in (0, 1) for w in (0, 1)]
    stand_in.running(("ns", "m"), 2, pods)
    scaler.reports.update("ADDED", pod_lease("gw-a", NOW, None, {"m-1": 1}))
    step(scaler, stand_in)
    clock.now = NOW + 60
    state = scaler.states[("ns", "m")]
    scaler.reports.update("ADDED", pod_lease("gw-a", clock.now, None, {}))
    step(scaler, stand_in)
    assert state.pod_drain is not None and state.pod_drain.pods == ("m-1",)
    assert state.desired == 2

    scaler.reports.update("ADDED", pod_lease("gw-a", clock.now, state.pod_drain.token, {}))
    step(scaler, stand_in)
    assert state.desired == 1
    assert stand_in.annotated == []
