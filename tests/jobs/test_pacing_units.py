"""The pure parts of pacing: the AIMD controller, the gateway's online latency ratio,
the signal's headers both ways, and the power profile's concurrency from the gateway's
answer."""

from __future__ import annotations

import pytest

from modelserve.common.online_pressure import (
    IN_FLIGHT_HEADER,
    LATENCY_RATIO_HEADER,
    OnlineSignal,
    is_background,
    read_signal,
    signal_headers,
)
from modelserve.gateway.jobs.pressure import FRESH_SECONDS, OnlinePressure
from modelserve.jobs.pacing.aimd import Aimd, AimdSettings
from modelserve.jobs.pacing.pacer import Pacer
from modelserve.jobs.pacing.profile import ProfileUnreadable, profile_concurrency

SLOW = OnlineSignal(1, 2.0)
CALM = OnlineSignal(0, None)  # no online traffic
BUSY = OnlineSignal(1, 1.1)  # online traffic, not slowed
SETTINGS = AimdSettings(
    latency_factor=1.25, increase_seconds=2.0, decrease_seconds=1.0, busy_increase_seconds=5.0
)


def test_aimd_halves_when_online_latency_rises_at_most_once_per_interval() -> None:
    aimd = Aimd(SETTINGS, cap=8, now=0.0)
    assert aimd.observe(SLOW, 8, 0.0) == 4
    assert aimd.observe(SLOW, 8, 0.5) == 4  # the last halving has not shown yet
    assert aimd.observe(SLOW, 8, 1.0) == 2
    assert aimd.observe(SLOW, 8, 2.0) == 1
    assert aimd.observe(SLOW, 8, 3.0) == 1  # never below one


def test_with_a_floor_of_zero_items_pause_and_one_probe_tells_when_to_go_on() -> None:
    pausing = AimdSettings(
        latency_factor=1.25,
        increase_seconds=2.0,
        decrease_seconds=1.0,
        busy_increase_seconds=5.0,
        floor=0,
        pause_seconds=5.0,
    )
    aimd = Aimd(pausing, cap=2, now=0.0)
    assert aimd.observe(SLOW, 2, 0.0) == 1
    assert aimd.observe(SLOW, 2, 0.2) == 0  # one item still slows them: pause
    # Paused, no answer comes: the clock alone lets one probe through.
    assert aimd.limit(2, 4.0) == 0
    assert aimd.limit(2, 5.2) == 1
    assert aimd.observe(SLOW, 2, 5.5) == 0  # the probe slowed them: pause again
    assert aimd.limit(2, 9.0) == 0
    assert aimd.limit(2, 10.5) == 1
    # The probe's answer says online requests are not slowed: go on, and climb back.
    assert aimd.observe(CALM, 2, 11.0) == 1
    assert aimd.observe(CALM, 2, 12.5) == 2
    # Without a clock nothing is let through.
    stuck = Aimd(pausing, cap=1, now=0.0)
    assert stuck.observe(SLOW, 1, 0.0) == 0
    assert stuck.limit(1) == 0


def test_aimd_adds_one_back_per_calm_interval_up_to_the_cap() -> None:
    aimd = Aimd(SETTINGS, cap=4, now=0.0)
    aimd.observe(SLOW, 4, 0.0)
    aimd.observe(SLOW, 4, 1.0)
    assert aimd.limit(4) == 1
    # Calm is counted from the last slowed signal.
    assert aimd.observe(CALM, 4, 2.5) == 1
    assert aimd.observe(CALM, 4, 3.0) == 2
    assert aimd.observe(CALM, 4, 4.0) == 2
    assert aimd.observe(CALM, 4, 5.0) == 3
    assert aimd.observe(CALM, 4, 7.0) == 4
    assert aimd.observe(CALM, 4, 9.0) == 4
    # A smaller cap (the power profile) bounds it at once.
    assert aimd.limit(2) == 2


def test_without_a_ratio_online_requests_in_flight_count_as_slowed() -> None:
    aimd = Aimd(SETTINGS, cap=8, now=0.0)
    assert aimd.observe(OnlineSignal(2, None), 8, 0.0) == 4
    assert aimd.observe(OnlineSignal(0, None), 8, 1.5) == 4
    assert aimd.observe(OnlineSignal(0, None), 8, 2.0) == 5
    # With a ratio below the factor, online requests in flight are no reason to slow;
    # while they are there, one item comes back per busy interval only.
    assert aimd.observe(BUSY, 8, 4.0) == 5
    assert aimd.observe(BUSY, 8, 7.0) == 6
    assert aimd.observe(BUSY, 8, 11.0) == 6
    assert aimd.observe(OnlineSignal(0, 1.1), 8, 12.0) == 7


def test_the_gateway_s_ratio_rises_with_slow_online_requests_and_falls_back() -> None:
    now = [0.0]
    pressure = OnlinePressure(clock=lambda: now[0])
    assert pressure.signal("m") == OnlineSignal(0, None)
    for _ in range(3):  # idle: 1 s for 10 tokens
        pressure.started("m")
        pressure.finished("m", 1.0, 10)
    assert pressure.signal("m") == OnlineSignal(0, 1.0)
    pressure.started("m")
    assert pressure.signal("m").in_flight == 1
    pressure.finished("m", 3.0, 10)  # three times slower
    slowed = pressure.signal("m").latency_ratio
    assert slowed is not None and slowed > 1.5
    for _ in range(10):  # back to idle speed
        pressure.started("m")
        pressure.finished("m", 1.0, 10)
    calm = pressure.signal("m").latency_ratio
    assert calm is not None and calm < 1.1
    # A failed request leaves flight without a sample; an old ratio is not told.
    pressure.started("m")
    pressure.finished("m", None)
    now[0] += FRESH_SECONDS + 1
    assert pressure.signal("m") == OnlineSignal(0, None)


def test_the_gateway_s_baseline_follows_faster_samples_at_once_and_slower_slowly() -> None:
    pressure = OnlinePressure(clock=lambda: 0.0)
    for seconds in (2.0, 2.0, 2.0):
        pressure.started("m")
        pressure.finished("m", seconds, 1)
    for _ in range(20):  # a sustained slowdown moves the baseline only a little
        pressure.started("m")
        pressure.finished("m", 4.0, 1)
    ratio = pressure.signal("m").latency_ratio
    assert ratio is not None and ratio > 1.5


def test_the_signal_travels_in_headers() -> None:
    headers = signal_headers(OnlineSignal(2, 1.5))
    assert headers == {IN_FLIGHT_HEADER: "2", LATENCY_RATIO_HEADER: "1.500"}
    lowered = {name.lower(): value for name, value in headers.items()}
    assert read_signal(lowered) == OnlineSignal(2, 1.5)
    assert read_signal({IN_FLIGHT_HEADER.lower(): "0"}) == OnlineSignal(0, None)
    assert read_signal({}) is None
    assert read_signal({IN_FLIGHT_HEADER.lower(): "x"}) is None
    bad_ratio = {IN_FLIGHT_HEADER.lower(): "1", LATENCY_RATIO_HEADER.lower(): "nan"}
    assert read_signal(bad_ratio) == OnlineSignal(1, None)
    assert is_background({"x-modelserve-priority": "Background"})
    assert not is_background({"x-modelserve-priority": "online"})
    assert not is_background({})


def test_the_power_profile_s_concurrency_bounds_the_cap_once_chosen() -> None:
    assert profile_concurrency(200, {"chosen": True, "max_concurrent_jobs": 2}) == 2
    assert profile_concurrency(200, {"chosen": False, "max_concurrent_jobs": 1}) is None
    no_cluster = {"error": {"code": "no_cluster", "message": "…"}}
    assert profile_concurrency(503, no_cluster) is None
    with pytest.raises(ProfileUnreadable):
        profile_concurrency(503, {"error": {"code": "cluster_unavailable"}})
    with pytest.raises(ProfileUnreadable):
        profile_concurrency(200, {"chosen": True, "max_concurrent_jobs": 0})
    pacer = Pacer(4, SETTINGS, clock=lambda: 0.0)
    assert (pacer.cap(), pacer.limit("m")) == (4, 4)
    pacer.set_profile(2)
    assert (pacer.cap(), pacer.limit("m")) == (2, 2)
    pacer.set_profile(None)
    assert pacer.cap() == 4


def test_the_pacer_backs_off_per_model() -> None:
    now = [0.0]
    pacer = Pacer(8, SETTINGS, clock=lambda: now[0])
    pacer.observe("m", SLOW)
    assert pacer.limits() == {"m": 4}
    assert pacer.limit("other") == 8
    off = Pacer(8, None)
    off.observe("m", SLOW)
    assert off.limit("m") == 8


def test_the_gateway_tells_a_ratio_only_while_online_traffic_is_there() -> None:
    now = [0.0]
    pressure = OnlinePressure(clock=lambda: now[0])
    for _ in range(3):
        pressure.started("m")
        pressure.finished("m", 1.0, 10)
    now[0] += FRESH_SECONDS + 0.5
    assert pressure.signal("m").latency_ratio is None  # online traffic stopped
    pressure.started("m")  # a long online request in flight: the last ratio holds
    assert pressure.signal("m") == OnlineSignal(1, 1.0)
