"""The autoscaler's pure decisions: activation and load scaling, idle sleep, the drain
fence, and the choice of models to evict for GPUs."""

from __future__ import annotations

from modelserve.common.load_reports import LoadReport, ServerLoad
from modelserve.common.modelserve import Autoscaling
from modelserve.operator.autoscaling.decisions import (
    NO_EVICTABLE,
    WAITING_FOR_EVICTION,
    Candidate,
    Drain,
    DrainOutcome,
    LoadWindow,
    drain_outcome,
    idle_seconds,
    initial_replicas,
    plan_eviction,
    scaled_replicas,
    should_sleep,
)

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
    assert scaled_replicas(1, load=5, average=1.0, autoscaling=scaling) == 3
    assert scaled_replicas(1, load=50, average=1.0, autoscaling=scaling) == 4  # max
    # The load fell, the window still remembers it: no flapping down.
    assert scaled_replicas(3, load=0, average=5.0, autoscaling=scaling) == 3
    assert scaled_replicas(3, load=0, average=2.5, autoscaling=scaling) == 2
    assert scaled_replicas(3, load=0, average=0.0, autoscaling=scaling) == 1


def test_load_scaling_keeps_one_replica_with_min_zero_and_never_wakes_a_sleeper() -> None:
    scaling = Autoscaling(min_replicas=0, max_replicas=2, target_requests=1)
    assert scaled_replicas(2, load=0, average=0.0, autoscaling=scaling) == 1
    assert scaled_replicas(0, load=3, average=3.0, autoscaling=scaling) == 0


def test_a_gpu_cap_holds_scale_ups_back() -> None:
    scaling = Autoscaling(min_replicas=1, max_replicas=4, target_requests=1)
    assert scaled_replicas(1, load=4, average=4.0, autoscaling=scaling, cap=2) == 2


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
        gpu_type="NVIDIA-L4", priority=priority, needed=needed, candidates=candidates, now=NOW
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
    assert "ns/a is pinned" in found.message
    assert "ns/b has priority 5 above 1" in found.message
    assert found.message.startswith("no GPU of type NVIDIA-L4 free")


def test_same_priority_may_be_evicted() -> None:
    assert plan(candidate("a", priority=3), priority=3).victims == (("ns", "a"),)


def test_busy_or_recently_woken_models_make_the_waiting_model_wait() -> None:
    found = plan(candidate("a", busy=True), candidate("b", activated_at=NOW - 30))
    assert found.victims == ()
    assert found.blocked == WAITING_FOR_EVICTION
    assert "ns/a has requests in flight or held" in found.message
    assert "ns/b woke 30 s ago (minimum residence 120 s)" in found.message


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
