"""Guarantees of the route table that mutants of routing.py broke unnoticed
(bench/mutation.py): which server of several takes a request, what a target reads from a
ModelServe's status, and what the table answers once servers come and go."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from modelserve.common.rollouts import ModelVersion
from modelserve.common.tokens import Claims
from modelserve.gateway.balancing import Endpoint
from modelserve.gateway.endpoints import ServiceSlice
from modelserve.gateway.routing import (
    NotReady,
    RouteTable,
    Target,
    Unknown,
    least_loaded,
    loading_from_status,
    target_from_body,
)

now = int(time.time())
ALICE = Claims(
    sub="alice", teams=["nlp"], roles=[], iss="modelserve", aud="modelserve", exp=now + 600,
    iat=now, jti="t",
)  # fmt: skip
EXTERNAL = {"url": "https://api.example.com/v1"}


def body(
    name: str,
    *,
    uid: str | None = None,
    phase: str | None = "Ready",
    external: dict[str, Any] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    """A ModelServe of alice's (team nlp) in team-a serving qwen-7b, as the API returns it."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "team-a",
        "uid": uid or f"uid-{name}",
        "generation": 1,
        "labels": {"llm.modelserve.io/owner": "alice", "llm.modelserve.io/team": "nlp"},
        "creationTimestamp": "2025-01-02T03:04:05Z",
    }
    if deleting:
        metadata["deletionTimestamp"] = "2025-01-02T04:00:00Z"
    spec: dict[str, Any] = {
        "runtime": "external" if external else "vllm",
        "model": {"servedName": "qwen-7b"},
    }
    if external:
        spec["external"] = external
    status: dict[str, Any] = {}
    if phase:
        endpoint = (external or {}).get("url") or f"http://{name}.team-a.svc:8000/v1"
        status = {"phase": phase, "endpoint": endpoint, "message": f"it is {phase}"}
    return {"metadata": metadata, "spec": spec, "status": status}


def loaded() -> RouteTable:
    table = RouteTable()
    table.synced = True
    return table


def add(table: RouteTable, server: dict[str, Any], *, ready: bool = True) -> Target:
    """The server in `table`, with one endpoint of its Service (ready or not)."""
    target = target_from_body(server)
    table.upsert(target)
    url = f"http://10.244.0.{len(table)}:8000/v1"
    found = ServiceSlice(
        target.namespace, f"{target.name}-abcde", target.name, (Endpoint(url, ready=ready),)
    )
    table.endpoints.upsert(found)
    return target


def targets(*names: str) -> list[Target]:
    return [target_from_body(body(name, uid=name)) for name in names]


def test_the_least_loaded_wins_and_a_server_without_requests_counts_as_idle() -> None:
    a, b, c = targets("a", "b", "c")
    # b and c have no entry: nothing in flight, fewer than a's one.
    assert least_loaded([a, b, c], {"a": 1}, turn=0) is b
    assert least_loaded([a, b], {"a": 1, "b": 0}, turn=0) is b


def test_ties_go_to_the_next_in_turn() -> None:
    a, b, c = targets("a", "b", "c")
    # b and c tie below a: the first after the turn's own candidate wins.
    assert least_loaded([a, b, c], {"a": 2, "b": 1, "c": 1}, turn=0) is b
    assert least_loaded([a, b, c], {"a": 0, "b": 0, "c": 0}, turn=4) is b


def test_a_target_reads_its_status_as_the_operator_writes_it() -> None:
    server = body("qwen")
    server["status"] = {"endpoint": "http://qwen.team-a.svc:8000/v1/", "message": "scheduling"}
    target = target_from_body(server)
    assert target.phase == "Pending"  # no phase yet
    assert target.endpoint == "http://qwen.team-a.svc:8000/v1"
    assert target.message == "scheduling"
    assert not target.deleting
    going = target_from_body(body("qwen", deleting=True))
    assert going.deleting
    assert going.message == "it is being deleted"


def test_the_running_model_comes_from_the_status() -> None:
    server = body("qwen")
    assert target_from_body(server).model is None
    server["status"]["model"] = {"uri": "s3://models/qwen-7b", "version": "v2"}
    assert target_from_body(server).model == ModelVersion("s3://models/qwen-7b", "v2")


def test_a_server_that_is_removed_is_no_longer_found() -> None:
    table = loaded()
    target = add(table, body("a"))
    assert table.lookup("qwen-7b", ALICE) == table.server(target.server_id)
    table.remove(target.server_id)
    assert isinstance(table.lookup("qwen-7b", ALICE), Unknown)
    # A request that was routed to it keeps its own copy.
    assert table.current(target) is target


def test_an_unchanged_server_changes_nothing() -> None:
    table = loaded()
    target = add(table, body("a"))
    seen: list[int] = []
    table.changes.listen(lambda: seen.append(1))
    table.upsert(target)
    assert seen == []
    table.upsert(dataclasses.replace(target, message="changed"))
    assert seen == [1]
    table.remove("no-such-server")
    assert seen == [1]


def test_an_unknown_platform_model_is_unknown() -> None:
    assert isinstance(loaded().find("nothing"), Unknown)


def test_before_discovery_synced_a_missing_model_is_retried_soon() -> None:
    table = RouteTable()
    answer = table.lookup("qwen-7b", ALICE)
    assert isinstance(answer, NotReady)
    assert answer.model == "qwen-7b"
    assert answer.retry_after == 1


def test_not_ready_says_why_for_each_server() -> None:
    table = loaded()
    one = body("a", phase="Failed")
    one["status"]["message"] = "bad spec"
    add(table, one, ready=False)
    add(table, body("b", phase="Deploying"), ready=False)
    answer = table.lookup("qwen-7b", ALICE)
    assert isinstance(answer, NotReady)
    assert answer.model == "qwen-7b"
    assert answer.message == (
        "the model 'qwen-7b' is not ready yet "
        "(team-a/a is Failed: bad spec; team-a/b is Deploying: it is Deploying)"
    )


def autoscaled(name: str, desired: int | None) -> dict[str, Any]:
    server = body(name, phase="Ready")
    server["spec"]["autoscaling"] = {"enabled": True}
    if desired is not None:
        server["status"]["desiredReplicas"] = desired
    return server


def test_a_held_request_waits_for_the_server_already_waking() -> None:
    table = loaded()
    add(table, autoscaled("a", 0), ready=False)
    waking = add(table, autoscaled("b", 1), ready=False)
    chosen = table.lookup("qwen-7b", ALICE)
    assert isinstance(chosen, Target) and chosen.server_id == waking.server_id
    # Neither waking: the first.
    table = loaded()
    first = add(table, autoscaled("a", 0), ready=False)
    add(table, autoscaled("b", 0), ready=False)
    chosen = table.lookup("qwen-7b", ALICE)
    assert isinstance(chosen, Target) and chosen.server_id == first.server_id


def test_an_external_server_without_an_endpoint_has_none() -> None:
    table = loaded()
    target = target_from_body(body("x", external=EXTERNAL, phase=None))
    assert table.endpoints_of(dataclasses.replace(target, endpoint="")) == ()


def test_drain_and_scheduling_details_are_read_only_where_they_apply() -> None:
    # A drain without a token is no drain: its reason and message are not shown.
    loading = loading_from_status({"drain": {"reason": "Evicted", "message": "for b"}})
    assert (loading.drain_token, loading.drain_reason, loading.drain_message) == (None, "", "")
    bare = loading_from_status({"drain": {"token": "t1"}})
    assert (bare.drain_token, bare.drain_reason, bare.drain_message) == ("t1", "", "")
    # Fields of the wrong shape are ignored, not a crash.
    odd = loading_from_status(
        {"drain": "yes", "podDrain": "no", "conditions": ["x"], "desiredReplicas": -1}
    )
    assert odd.drain_token is None and odd.pod_drain_token is None
    assert odd.desired_replicas is None
    scheduled = {"type": "Scheduled", "status": "True", "message": "on node-1"}
    fine = loading_from_status({"conditions": [scheduled]})
    assert (fine.unscheduled_reason, fine.unscheduled_message) == (None, "")
    waiting = loading_from_status({"conditions": [{"type": "Scheduled", "status": "False"}]})
    assert (waiting.unscheduled_reason, waiting.unscheduled_message) == ("", "")
    # Pods named without a token are not being let go.
    untokened = loading_from_status({"podDrain": {"pods": ["p-1"]}})
    assert untokened.pod_drain_pods == frozenset()
    tokened = loading_from_status({"podDrain": {"token": "t2", "pods": ["p-1"]}})
    assert tokened.pod_drain_pods == frozenset({"p-1"})


def test_a_server_without_a_message_is_named_with_its_phase_alone() -> None:
    table = loaded()
    quiet = body("a", phase="Deploying")
    quiet["status"]["message"] = ""
    add(table, quiet, ready=False)
    answer = table.lookup("qwen-7b", ALICE)
    assert isinstance(answer, NotReady)
    assert answer.message == "the model 'qwen-7b' is not ready yet (team-a/a is Deploying)"
