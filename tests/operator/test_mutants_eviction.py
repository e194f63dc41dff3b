"""Guarantees of the eviction choice and of putting models to sleep that mutants of
autoscaling/decisions.py broke unnoticed (bench/mutation.py): a model already being put to
sleep is waited for, never chosen again; the residence and idle limits hold from their
exact second; and what the waiting model's status says when nothing can be evicted."""

from __future__ import annotations

from typing import Any

from modelserve.common.modelserve import Autoscaling
from modelserve.operator.autoscaling.decisions import (
    IDLE,
    NO_EVICTABLE,
    WAITING_FOR_EVICTION,
    Candidate,
    Drain,
    EvictionPlan,
    idle_seconds,
    listed,
    plan_eviction,
    should_sleep,
)

NOW = 1_700_000_000.0


def candidate(name: str, namespace: str = "ns", **changes: Any) -> Candidate:
    fields: dict[str, Any] = {
        "key": (namespace, name),
        "gpus": 1,
        "pinned": False,
        "priority": 0,
        "busy": False,
        "activated_at": NOW - 3600,
        "last_used": NOW - 600,
        "min_residence_seconds": 120,
    }
    fields.update(changes)
    return Candidate(**fields)


def plan(*candidates: Candidate, needed: int = 1, gpu_type: str | None = "L4") -> EvictionPlan:
    return plan_eviction(
        namespace="ns",
        gpu_type=gpu_type,
        priority=0,
        needed=needed,
        candidates=candidates,
        now=NOW,
    )


def test_a_model_already_going_to_sleep_is_waited_for_not_chosen_again() -> None:
    found = plan(candidate("going", draining=True))
    assert found.victims == ()
    assert found.blocked == WAITING_FOR_EVICTION
    assert found.message == "no GPU of type L4 free: going is being put to sleep already"


def test_the_minimum_residence_ends_at_its_exact_second() -> None:
    # Woken exactly min_residence_seconds ago: it has stayed long enough.
    done = candidate("a", activated_at=NOW - 120)
    assert plan(done).victims == (("ns", "a"),)
    staying = candidate("a", activated_at=NOW - 119)
    assert plan(staying).blocked == WAITING_FOR_EVICTION


def test_reasons_are_joined_and_the_gpu_type_named() -> None:
    found = plan(
        candidate("p", pinned=True),
        candidate("b", busy=True),
        needed=3,
    )
    assert found.blocked == NO_EVICTABLE
    assert found.message == (
        "no GPU of type L4 free: p is pinned; b has requests in flight or held; "
        "evicting all that may be would free 1 of 3 GPUs"
    )
    waiting = plan(candidate("b", busy=True), candidate("w", activated_at=NOW - 5))
    assert waiting.message == (
        "no GPU of type L4 free: b has requests in flight or held; "
        "w woke 5 s ago (minimum residence 120 s)"
    )


def test_with_no_candidates_or_too_few_gpus_the_message_says_so() -> None:
    assert plan(gpu_type="H100").message == (
        "no GPU of type H100 free: no other model with spec.autoscaling holds GPUs of type H100"
    )
    assert plan(gpu_type=None).message == (
        "no GPU of type (no gpuType) free: "
        "no other model with spec.autoscaling holds GPUs of type (no gpuType)"
    )
    small = plan(candidate("a"), needed=2)
    assert small.blocked == NO_EVICTABLE
    assert small.message == (
        "no GPU of type L4 free: evicting every other model would free 1 of 2 GPUs"
    )


def test_models_of_other_namespaces_are_counted_in_lists() -> None:
    assert listed([("ns", "a"), ("other", "b")], "ns") == "a, a model in another namespace"
    assert listed([("x", "a"), ("y", "b")], "ns") == "2 models in other namespaces"


def test_a_model_sleeps_once_idle_for_exactly_its_timeout() -> None:
    scaling = Autoscaling(min_replicas=0, max_replicas=1, idle_timeout_seconds=600)
    assert should_sleep(scaling, desired=1, busy=False, idle=600)
    assert not should_sleep(scaling, desired=1, busy=False, idle=599)


def test_idle_time_counts_from_the_latest_of_use_activation_and_creation() -> None:
    assert idle_seconds(NOW - 50, None, None, NOW) == 50
    assert idle_seconds(0.0, NOW - 30, None, NOW) == 30
    assert idle_seconds(0.0, None, NOW - 20, NOW) == 20
    assert idle_seconds(0.0, None, None, NOW) == 0.0  # nothing known: not idle


def test_a_drain_is_read_back_from_the_status_only_with_its_token() -> None:
    assert Drain.from_status({"reason": "Evicted"}, NOW) is None
    drain = Drain.from_status({"token": "t1", "message": "for b"}, NOW)
    assert drain == Drain(token="t1", reason=IDLE, message="for b", since=NOW)
    full = Drain.from_status({"token": "t2", "reason": "Evicted"}, NOW)
    assert full is not None and (full.reason, full.message) == ("Evicted", "")
