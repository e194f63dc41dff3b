"""Dynamic loading, the pure parts: a ModelServe's loading status as a target, what
becomes of a held request, which state a model is in, the load book and the report."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from modelserve.common.load_reports import ServerLoad, build_lease, report_from_lease
from modelserve.common.tokens import Claims, TokenSettings
from modelserve.gateway.balancing import Endpoint
from modelserve.gateway.endpoints import ServiceSlice
from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.loading.listing import health_lists, status_of
from modelserve.gateway.loading.reporter import default_replica_id, report_of
from modelserve.gateway.loading.states import Fail, Go, ModelState, Wait, model_state, verdict
from modelserve.gateway.routing import NotReady, RouteTable, Target, target_from_body
from modelserve.gateway.settings import GatewaySettings

AUTOSCALING = {"minReplicas": 0, "maxReplicas": 2, "idleTimeoutSeconds": 60}


def body(
    name: str = "qwen",
    *,
    status: dict[str, Any] | None = None,
    autoscaling: dict[str, Any] | None = AUTOSCALING,
    replicas: int = 1,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "runtime": "llamacpp",
        "model": {"servedName": "qwen-7b"},
        "replicas": replicas,
    }
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return {
        "metadata": {
            "name": name,
            "namespace": "modelserve",
            "uid": f"uid-{name}",
            "labels": {},
            "creationTimestamp": "2025-01-02T03:04:05Z",
        },
        "spec": spec,
        "status": status if status is not None else {"phase": "Sleeping", "desiredReplicas": 0},
    }


def scheduled(reason: str, message: str = "no GPU") -> dict[str, Any]:
    return {"type": "Scheduled", "status": "False", "reason": reason, "message": message}


WAITING = scheduled("WaitingForEviction", "A busy")
NO_ROOM = scheduled("NoEvictableModel")


def table_with(*targets: Target, ready: bool = False) -> RouteTable:
    table = RouteTable(platform_namespaces=["modelserve"])
    table.synced = True
    for target in targets:
        table.upsert(target)
        if ready:
            slice_ = ServiceSlice(
                target.namespace,
                f"{target.name}-x",
                target.name,
                (Endpoint(f"http://10.0.0.{len(target.name)}:8080/v1"),),
            )
            table.endpoints.upsert(slice_)
    return table


ADMIN = Claims(sub="root", roles=["admin"], teams=[], iss="m", aud="m", exp=2**40, iat=0, jti="t")


# --- Targets -----------------------------------------------------------------------------


def test_the_loading_status_becomes_part_of_the_target() -> None:
    status = {
        "phase": "Ready",
        "desiredReplicas": 1,
        "lastRequestTime": "2025-01-02T03:04:05Z",
        "drain": {"token": "t-1", "reason": "Evicted", "message": "for llama", "since": "x"},
        "conditions": [scheduled("WaitingForEviction", "llama must go first")],
    }
    target = target_from_body(body(status=status))
    assert target.autoscaled and target.autoscaling is not None
    assert target.autoscaling.max_replicas == 2
    loading = target.loading
    assert loading.desired_replicas == 1
    assert loading.last_request == 1735787045.0
    assert (loading.drain_token, loading.drain_reason) == ("t-1", "Evicted")
    assert loading.drain_message == "for llama"
    assert loading.unscheduled_reason == "WaitingForEviction"
    assert loading.unscheduled_message == "llama must go first"
    assert target.draining


def test_a_server_without_autoscaling_or_loading_status() -> None:
    target = target_from_body(body(autoscaling=None, status={"phase": "Ready"}))
    assert not target.autoscaled and not target.draining
    assert target.loading.desired_replicas is None
    assert target.loading.last_request == 0.0
    assert target.loading.unscheduled_reason is None


def test_a_scheduled_condition_that_holds_is_not_a_reason() -> None:
    status = {"phase": "Ready", "conditions": [{**scheduled("Placed"), "status": "True"}]}
    assert target_from_body(body(status=status)).loading.unscheduled_reason is None


def test_a_drain_without_token_is_no_drain() -> None:
    target = target_from_body(body(status={"phase": "Ready", "drain": {"reason": "Idle"}}))
    assert not target.draining


# --- The route table ---------------------------------------------------------------------


def test_a_sleeping_autoscaled_server_is_looked_up_to_be_held() -> None:
    target = target_from_body(body())
    table = table_with(target)
    placed = table.server(target.server_id)
    assert placed is not None and not table.serving(placed)
    assert table.lookup("qwen-7b", ADMIN) == placed
    assert table.readiness(placed) == placed


def test_a_server_without_autoscaling_is_still_not_ready() -> None:
    target = target_from_body(body(autoscaling=None, status={"phase": "Deploying"}))
    table = table_with(target)
    assert isinstance(table.lookup("qwen-7b", ADMIN), NotReady)
    assert isinstance(table.readiness(target), NotReady)


def test_a_failed_autoscaled_server_is_not_held() -> None:
    target = target_from_body(body(status={"phase": "Failed", "message": "bad spec"}))
    assert isinstance(table_with(target).lookup("qwen-7b", ADMIN), NotReady)


def test_a_draining_server_takes_no_new_request_even_with_ready_endpoints() -> None:
    status = {"phase": "Ready", "desiredReplicas": 1, "drain": {"token": "t", "reason": "Idle"}}
    table = table_with(target_from_body(body(status=status)), ready=True)
    target = table.server("uid-qwen")
    assert target is not None and not table.serving(target)
    assert table.lookup("qwen-7b", ADMIN) == target  # held, not refused


def test_the_gateways_own_lookups_do_not_hold() -> None:
    target = target_from_body(body())
    assert isinstance(table_with(target).find("qwen-7b"), NotReady)


def test_a_change_of_the_table_wakes_who_waits() -> None:
    import asyncio

    async def scenario() -> None:
        table = table_with()
        waiting = asyncio.create_task(table.changes.wait())
        await asyncio.sleep(0)
        assert not waiting.done()
        table.endpoints.upsert(ServiceSlice("ns", "s", "svc", (Endpoint("http://1.2.3.4/v1"),)))
        await asyncio.wait_for(waiting, 1)

    asyncio.run(scenario())


# --- Verdicts ----------------------------------------------------------------------------


def test_a_serving_server_lets_its_held_requests_go() -> None:
    target = target_from_body(body(status={"phase": "Ready", "desiredReplicas": 1}))
    assert verdict(target, True, model="qwen-7b") == Go(target)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ({"phase": "Sleeping", "desiredReplicas": 0}, "asleep"),
        ({"phase": "Deploying", "desiredReplicas": 1, "message": "pulling"}, "loading"),
        ({"phase": "Ready", "drain": {"token": "t", "reason": "Idle"}}, "put to sleep (Idle)"),
        (
            {
                "phase": "Pending",
                "desiredReplicas": 1,
                "conditions": [scheduled("WaitingForEviction", "A busy")],
            },
            "WaitingForEviction: A busy",
        ),
        # A stale NoEvictableModel while asleep: the request asks for another try.
        (
            {
                "phase": "Sleeping",
                "desiredReplicas": 0,
                "conditions": [scheduled("NoEvictableModel")],
            },
            "asleep",
        ),
    ],
)
def test_held_requests_wait_while_the_model_may_still_come(
    status: dict[str, Any], words: str
) -> None:
    found = verdict(target_from_body(body(status=status)), False, model="qwen-7b")
    assert isinstance(found, Wait)
    assert words in found.reason


def test_no_evictable_model_while_waking_fails_at_once() -> None:
    status = {
        "phase": "Pending",
        "desiredReplicas": 1,
        "conditions": [scheduled("NoEvictableModel", "every L4 model is pinned")],
    }
    found = verdict(target_from_body(body(status=status)), False, model="qwen-7b")
    assert isinstance(found, Fail)
    assert found.code == "model_cannot_be_placed"
    assert "NoEvictableModel" in found.message and "every L4 model is pinned" in found.message


@pytest.mark.parametrize(
    "target",
    [None, target_from_body(body(status={"phase": "Failed", "message": "bad"}))],
)
def test_a_deleted_or_failed_server_fails_its_held_requests(target: Target | None) -> None:
    found = verdict(target, False, model="qwen-7b")
    assert isinstance(found, Fail) and found.code == "model_unavailable"


# --- States ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "serving", "held", "state"),
    [
        ({"phase": "Ready", "desiredReplicas": 1}, True, 0, ModelState.LOADED),
        ({"phase": "Deploying", "desiredReplicas": 1}, False, 0, ModelState.LOADING),
        ({"phase": "Sleeping", "desiredReplicas": 0}, False, 3, ModelState.SLEEPING),
        ({"phase": "Pending", "desiredReplicas": 0}, False, 1, ModelState.LOADING),
        ({"phase": "Pending", "desiredReplicas": 0}, False, 0, ModelState.SLEEPING),
        ({"phase": "Ready", "drain": {"token": "t"}}, False, 0, ModelState.SLEEPING),
        ({"phase": "Failed"}, False, 0, ModelState.UNAVAILABLE),
    ],
)
def test_the_state_of_an_autoscaled_model(
    status: dict[str, Any], serving: bool, held: int, state: ModelState
) -> None:
    assert model_state(target_from_body(body(status=status)), serving, held) is state


def test_the_state_of_models_without_autoscaling() -> None:
    deploying = target_from_body(body(autoscaling=None, status={"phase": "Deploying"}))
    assert model_state(deploying, False, 0) is ModelState.LOADING
    stopped = target_from_body(body(autoscaling=None, replicas=0, status={"phase": "Pending"}))
    assert model_state(stopped, False, 0) is ModelState.UNAVAILABLE


def test_a_model_is_as_well_as_its_best_server_and_health_lists_it() -> None:
    asleep = target_from_body(body("a"))
    awake = target_from_body(body("b", status={"phase": "Ready", "desiredReplicas": 1}))
    table = table_with(asleep, awake, ready=False)
    table.endpoints.upsert(
        ServiceSlice("modelserve", "b-x", "b", (Endpoint("http://10.0.0.9:8080/v1"),))
    )
    book = LoadBook(clock=lambda: 1000.0)
    book.held(asleep.server_id)
    status = status_of([asleep, awake], table, book)
    assert status.state is ModelState.LOADED
    assert status.last_used == 1000.0
    assert status_of([asleep], table, LoadBook()).fields() == {
        "state": "sleeping",
        "last_used": None,
    }
    lists = health_lists({"qwen-7b": status, "other": status_of([asleep], table, LoadBook())})
    assert lists["loaded_models"] == ["qwen-7b"]
    assert lists["available_models"] == ["other", "qwen-7b"]
    assert lists["models"][0] == {"id": "other", "state": "sleeping", "last_used": None}


# --- The book and the report -------------------------------------------------------------


def test_the_book_counts_and_tells_of_a_first_held_request() -> None:
    heard: list[tuple[str, bool]] = []
    book = LoadBook(clock=lambda: 42.0)
    book.listen(lambda server, first: heard.append((server, first)))
    book.held("a")
    book.held("a")
    book.started("b")
    book.released("a")
    assert heard == [("a", True), ("a", False), ("b", False), ("a", False)]
    assert book.load("a") == ServerLoad(in_flight=0, held=1, last_used=42.0)
    assert book.load("b") == ServerLoad(in_flight=1, held=0, last_used=42.0)
    book.finished("b")
    book.released("a")
    # A server the table no longer knows is forgotten once idle.
    assert book.report({"a"}) == {"a": ServerLoad(0, 0, 42.0)}
    assert book.load("b") == ServerLoad()


def test_the_report_acknowledges_every_drain_token_seen() -> None:
    draining = target_from_body(
        body("a", status={"phase": "Ready", "drain": {"token": "tok-1", "reason": "Idle"}})
    )
    table = table_with(draining, target_from_body(body("b")))
    book = LoadBook(clock=lambda: 5.0)
    book.held("uid-a")
    now = time.time()
    report = report_of("gw-1", table, book, 10.0, now)
    assert report.draining == {"uid-a": "tok-1"}
    assert report.servers == {"uid-a": ServerLoad(0, 1, 5.0)}
    # As the operator reads it back from the Lease.
    read = report_from_lease(build_lease(report, "modelserve"))
    assert read is not None and read.live(now)
    assert read.draining == {"uid-a": "tok-1"}
    assert read.servers["uid-a"].held == 1


def test_a_default_replica_id_is_a_lease_name() -> None:
    import re

    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", default_replica_id())


def test_the_lease_must_outlive_its_renewals() -> None:
    tokens = TokenSettings(secret=SecretStr("x" * 40))
    with pytest.raises(ValidationError, match="LOAD_LEASE_SECONDS"):
        GatewaySettings(load_report_seconds=5, load_lease_seconds=5, tokens=tokens)
