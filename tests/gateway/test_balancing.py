"""The endpoint choice as a pure policy, with stand-in endpoints and counts."""

from __future__ import annotations

from collections import Counter

from modelserve.gateway.balancing import Endpoint, choose_endpoint

A, B, C = (Endpoint(f"http://10.0.0.{n}:8000/v1", pod=f"pod-{n}") for n in (1, 2, 3))


def test_fewest_in_flight_wins() -> None:
    in_flight = {A.url: 3, B.url: 1, C.url: 2}
    assert {choose_endpoint([A, B, C], in_flight, turn) for turn in range(6)} == {B}


def test_ties_go_round_robin() -> None:
    chosen = [choose_endpoint([A, B, C], {}, turn) for turn in range(6)]
    assert chosen == [A, B, C, A, B, C]
    # Among the least busy only: A is busier, B and C take turns.
    busy = {A.url: 1}
    assert Counter(choose_endpoint([A, B, C], busy, turn) for turn in range(6)) == {B: 3, C: 3}


def test_an_endpoint_that_is_not_ready_gets_nothing() -> None:
    terminating = Endpoint(A.url, ready=False)
    assert {choose_endpoint([terminating, B], {B.url: 9}, turn) for turn in range(4)} == {B}
    assert choose_endpoint([terminating], {}, 0) is None


def test_excluded_endpoints_are_left_out() -> None:
    # A retry leaves out the endpoints the request already failed on, however idle.
    assert choose_endpoint([A, B, C], {B.url: 5, C.url: 5}, 0, exclude=[A.url]) in (B, C)
    assert choose_endpoint([A, B, C], {}, 0, exclude=[A.url, B.url]) == C
    assert choose_endpoint([A, B], {}, 0, exclude=[A.url, B.url]) is None


def test_no_endpoints_no_choice() -> None:
    assert choose_endpoint([], {}, 0) is None


def test_counts_of_unknown_endpoints_do_not_matter() -> None:
    # A request still in flight on an endpoint that went away keeps its count.
    assert choose_endpoint([A], {"http://10.0.0.9:8000/v1": 4}, 0) == A
