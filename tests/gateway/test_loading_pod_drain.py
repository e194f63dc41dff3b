"""The pod drain fence on the gateway's side: a ModelServe's `status.podDrain` pods get no
new request (the requests they have go on), the replica acknowledges the token in its
load report at once, and the report counts the requests in flight per pod."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from kubernetes import client as k8s

from modelserve.common.load_reports import LOAD_ANNOTATION, report_from_lease
from modelserve.common.modelserve import OWNER_LABEL
from modelserve.gateway.balancing import Endpoint
from modelserve.gateway.endpoints import ServiceSlice
from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.loading.reporter import LoadReporter, report_of
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.routing import RouteTable, Target, target_from_body

SERVER_ID = str(uuid.uuid4())
BUSY = Endpoint("http://10.0.0.1:8080/v1", pod="qwen-busy")
IDLE = Endpoint("http://10.0.0.2:8080/v1", pod="qwen-idle")
AWAKE = {"phase": "Ready", "desiredReplicas": 2}
FENCED = {
    **AWAKE,
    "podDrain": {"token": "t-1", "pods": ["qwen-idle"], "since": "2026-01-01T00:00:00Z"},
}


def server(status: dict[str, Any]) -> Target:
    return target_from_body(
        {
            "metadata": {
                "name": "qwen",
                "namespace": "team-a",
                "uid": SERVER_ID,
                "labels": {OWNER_LABEL: "alice"},
            },
            "spec": {
                "runtime": "llamacpp",
                "model": {"servedName": "qwen"},
                "autoscaling": {"minReplicas": 1, "maxReplicas": 2},
            },
            "status": status,
        }
    )


def table_with(status: dict[str, Any]) -> RouteTable:
    table = RouteTable()
    table.endpoints.upsert(ServiceSlice("team-a", "qwen-abcde", "qwen", (BUSY, IDLE)))
    table.upsert(server(status))
    return table


def test_the_status_names_the_pods_and_the_token() -> None:
    loading = server(FENCED).loading
    assert loading.pod_drain_token == "t-1"
    assert loading.pod_drain_pods == {"qwen-idle"}
    assert server(AWAKE).loading.pod_drain_pods == frozenset()


def test_a_drained_pod_gets_no_new_request_and_keeps_those_it_has() -> None:
    table = table_with(AWAKE)
    target = table.server(SERVER_ID)
    assert target is not None
    table.endpoints.acquire(BUSY)  # the busy pod has one: the idle one would be chosen
    assert table.choose(target) == IDLE

    table.upsert(server(FENCED))
    table.endpoints.acquire(IDLE)  # a request that came before the fence
    stale = target  # a request routed before the fence chooses by the table's version
    assert [table.choose(stale) for _ in range(5)] == [BUSY] * 5
    assert table.serving(target)
    assert table.pod_loads(target) == {"qwen-busy": 1, "qwen-idle": 1}


def test_only_drained_pods_left_means_no_endpoint() -> None:
    table = table_with({**AWAKE, "podDrain": {"token": "t", "pods": ["qwen-idle", "qwen-busy"]}})
    target = table.server(SERVER_ID)
    assert target is not None
    assert table.choose(target) is None


def test_the_report_acknowledges_the_token_and_counts_each_pod() -> None:
    table, book = table_with(FENCED), LoadBook(clock=lambda: 100.0)
    table.endpoints.acquire(IDLE)
    table.endpoints.acquire(IDLE)
    book.started(SERVER_ID)
    book.started(SERVER_ID)
    report = report_of("gw-a", table, book, 10, 100.0)
    assert report.pod_draining == {SERVER_ID: "t-1"}
    assert report.servers[SERVER_ID].pods == {"qwen-idle": 2}
    assert report.servers[SERVER_ID].in_flight == 2


class Recorder(LoadReporter):
    """A reporter whose Lease writes are kept in memory instead of the API server."""

    def __init__(self, table: RouteTable, book: LoadBook) -> None:
        super().__init__(
            k8s.ApiClient(),
            table,
            book,
            GatewayMetrics(),
            replica="gw-a",
            namespace="modelserve",
            period=3600,  # only the immediate writes happen within a test
            duration=7200,
        )
        self.bodies: list[dict[str, Any]] = []

    def _put(self, body: dict[str, Any]) -> None:
        self.bodies.append(body)

    def _sweep(self, now: float) -> list[str]:
        return []

    def last(self) -> dict[str, Any]:
        return dict(json.loads(self.bodies[-1]["metadata"]["annotations"][LOAD_ANNOTATION]))


def test_a_pod_drain_is_acknowledged_at_once_and_its_requests_reported_as_they_end() -> None:
    async def scenario() -> None:
        table, book = table_with(AWAKE), LoadBook()
        reporter = Recorder(table, book)
        table.endpoints.acquire(IDLE)
        book.started(SERVER_ID)
        await reporter.start()
        try:
            await asyncio.sleep(0.05)  # the first write, at start
            assert "podDraining" not in reporter.last()

            table.upsert(server(FENCED))
            await asyncio.sleep(0.05)
            written = reporter.last()
            assert written["podDraining"] == {SERVER_ID: "t-1"}
            assert written["servers"][SERVER_ID]["pods"] == {"qwen-idle": 1}

            table.endpoints.release(IDLE)  # the request on the drained pod ends
            book.finished(SERVER_ID)
            await asyncio.sleep(0.05)
            lease = reporter.bodies[-1]
            report = report_from_lease(lease)
            assert report is not None
            assert report.servers[SERVER_ID].pods == {}
            assert report.pod_draining == {SERVER_ID: "t-1"}
        finally:
            for task in reporter._tasks:
                task.cancel()

    asyncio.run(scenario())
