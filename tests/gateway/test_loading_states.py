"""Dynamic loading, the pure parts: a ModelServe's loading status as a target, what
becomes of a held request, which state a model is in, the load book and the report."""

from __future__ import annotations

import time
from typing import Any

import pytest
import urllib3
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


def test_a_reward_model_may_be_looked_up_to_be_held() -> None:
    table = table_with(target_from_body(body()))
    assert table.find("qwen-7b", hold=True) == table.server("uid-qwen")


@pytest.mark.parametrize(
    ("desired", "serves"),
    [(0, False), (1, True), (None, True)],
)
def test_a_model_scaled_to_0_does_not_serve_on_endpoints_that_linger(
    desired: int | None, serves: bool
) -> None:
    """The operator clears the drain as it scales to 0; the EndpointSlice may show the
    pods ready a moment longer. desiredReplicas 0 says: asleep, hold and wake."""
    status: dict[str, Any] = {"phase": "Ready"}
    if desired is not None:
        status["desiredReplicas"] = desired
    table = table_with(target_from_body(body(status=status)), ready=True)
    target = table.server("uid-qwen")
    assert target is not None and table.serving(target) is serves
    assert target.asleep is not serves
    assert table.lookup("qwen-7b", ADMIN) == target  # held when it does not serve
    # Without autoscaling, desiredReplicas means nothing to the gateway.
    fixed = target_from_body(body(autoscaling=None, status=status))
    assert table_with(fixed, ready=True).serving(fixed)


def test_a_change_right_after_the_check_is_not_missed() -> None:
    """A held request checks, then waits with `asyncio.wait_for`, which starts the wait
    a loop turn later: a change in that turn must still wake it."""
    import asyncio

    async def scenario() -> None:
        table = table_with()
        waiting = table.changes.wait()
        table.changes.notify()
        await asyncio.wait_for(waiting, 1)

    asyncio.run(scenario())


# --- The dispatcher's fence --------------------------------------------------------------


class NoUpstream:
    async def send(self, url: str, body: bytes, headers: Any) -> Any:
        raise AssertionError("nothing may go upstream")


@pytest.mark.parametrize(
    ("status", "running", "refused"),
    [
        ({"phase": "Ready", "desiredReplicas": 1, "drain": {"token": "t"}}, False, True),
        # A scaled request's later call: its run holds the drain off.
        ({"phase": "Ready", "desiredReplicas": 1, "drain": {"token": "t"}}, True, False),
        ({"phase": "Ready", "desiredReplicas": 0}, False, True),
        ({"phase": "Ready", "desiredReplicas": 0}, True, True),
    ],
)
def test_the_dispatcher_sends_nothing_to_a_model_being_put_to_sleep(
    status: dict[str, Any], running: bool, refused: bool
) -> None:
    import asyncio

    from modelserve.gateway.dispatch import Dispatcher, NoReadyEndpoint
    from modelserve.gateway.metrics import GatewayMetrics

    awake = target_from_body(body(status={"phase": "Ready", "desiredReplicas": 1}))
    table = table_with(awake, ready=True)
    # The table learns of the drain after the request was routed with `awake`.
    table.upsert(target_from_body(body(status=status)))
    book = LoadBook()
    dispatcher = Dispatcher(table, NoUpstream(), GatewayMetrics(), book)  # type: ignore[arg-type]

    async def scenario() -> None:
        async with dispatcher.exchange(awake, "/chat/completions", b"{}", {}, running=running):
            pass

    if refused:
        with pytest.raises(NoReadyEndpoint, match="put to sleep"):
            asyncio.run(scenario())
    else:
        with pytest.raises(AssertionError, match="nothing may go upstream"):
            asyncio.run(scenario())
    assert book.load("uid-qwen").in_flight == 0


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


def test_a_scaled_run_keeps_its_servers_busy_without_adding_to_their_calls() -> None:
    book = LoadBook(clock=lambda: 7.0)
    with book.running(["a", "b"]):
        assert book.load("a") == ServerLoad(in_flight=1, held=0, last_used=7.0)
        book.started("a")
        book.started("a")
        assert book.load("a").in_flight == 2  # its calls, not its calls and itself
        book.finished("a")
        book.finished("a")
        assert book.load("a").in_flight == 1  # between its calls: still busy
        assert book.load("b").in_flight == 1
    assert book.load("a").in_flight == 0 and book.load("b").in_flight == 0


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


# --- The reporter: failures, and the Leases dead replicas leave ----------------------------


class FailingLeases:
    """The API server's Lease calls, failing as the network does."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise self.error

    patch_namespaced_lease = create_namespaced_lease = _fail
    list_namespaced_lease = delete_namespaced_lease = _fail


def failed_writes(metrics: Any) -> float:
    found = metrics.registry.get_sample_value(
        "modelserve_gateway_load_reports_total", {"result": "failed"}
    )
    return float(found or 0.0)


@pytest.mark.parametrize(
    "error",
    [
        urllib3.exceptions.ReadTimeoutError(None, "/leases", "read timed out"),  # type: ignore[arg-type]
        urllib3.exceptions.MaxRetryError(None, "/leases"),  # type: ignore[arg-type]
        urllib3.exceptions.ProtocolError("Connection aborted."),
        ConnectionResetError("reset by peer"),
    ],
    ids=["read-timeout", "max-retry", "protocol", "reset"],
)
def test_a_report_that_the_network_fails_is_counted_and_renewed_on_its_period(
    error: BaseException,
) -> None:
    import asyncio

    from kubernetes import client as k8s

    from modelserve.gateway.loading.reporter import LoadReporter
    from modelserve.gateway.metrics import GatewayMetrics

    async def scenario() -> None:
        api = k8s.ApiClient()
        metrics = GatewayMetrics()
        reporter = LoadReporter(
            api, table_with(), LoadBook(), metrics, replica="gw-1", namespace="modelserve",
            period=0.01, duration=10,
        )  # fmt: skip
        leases = FailingLeases(error)
        reporter._leases = leases
        assert await reporter.write() is False
        assert failed_writes(metrics) == 1
        assert await reporter.sweep() == []  # logged; the next sweep tries again
        await reporter.start()
        try:
            for _ in range(200):
                if failed_writes(metrics) >= 5:
                    break
                await asyncio.sleep(0.01)
            # Renewed on its period, not after the supervisor's back-off.
            assert failed_writes(metrics) >= 5
        finally:
            await reporter.close()  # its delete fails too: logged
            api.close()

    asyncio.run(scenario())
