"""The pure parts of a server's detail: which Events are a server's (by kind and name
shape, not by prefix), their order and view, its conditions, and what cannot be scaled."""

from __future__ import annotations

from typing import Any

from modelserve.gateway.server_events import is_server_event, server_events
from modelserve.gateway.servers import conditions, scale_refusal, scaled

UID = "0b5e…-uid"
NAME = "llama-x7k2p"


def event(kind: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"involvedObject": {"kind": kind, "name": name, "uid": fields.pop("uid", "")}, **fields}


def test_a_server_s_events_are_its_own_and_its_children_s_not_a_longer_name_s() -> None:
    mine = [
        event("ModelServe", NAME, uid=UID),
        event("Deployment", NAME),
        event("ReplicaSet", f"{NAME}-76d6497696"),
        event("Pod", f"{NAME}-76d6497696-7v4td"),
    ]
    theirs = [
        event("ModelServe", NAME, uid="an-older-server-of-that-name"),
        event("Deployment", f"{NAME}-2"),
        event("ReplicaSet", f"{NAME}-2-76d6497696"),
        event("Pod", f"{NAME}-2-76d6497696-7v4td"),
        event("Service", NAME),
    ]
    assert [is_server_event(e, UID, NAME) for e in mine] == [True] * 4
    assert [is_server_event(e, UID, NAME) for e in theirs] == [False] * 5


def test_a_neighbour_named_with_this_server_as_prefix_keeps_its_events() -> None:
    """`llama` and `llama-x7k2p` in one namespace: the leader of llama-x7k2p's
    LeaderWorkerSet (`llama-x7k2p-0`) has the shape of a worker of `llama`, and is not
    `llama`'s; nor are llama-x7k2p's ReplicaSets and pods. `llama`'s own, leader and
    worker pods included, are."""
    neighbours = {"llama", NAME}
    theirs = [
        event("Pod", f"{NAME}-0"),
        event("Pod", f"{NAME}-0-1"),
        event("Pod", f"{NAME}-76d6497696-7v4td"),
        event("ReplicaSet", f"{NAME}-76d6497696"),
    ]
    assert [is_server_event(e, "llama-uid", "llama", neighbours) for e in theirs] == [False] * 4
    # What a prefix alone would take, but no shape of a child of `llama` fits.
    shapeless = [event("Pod", "llama-abc-12345"), event("ReplicaSet", "llama-UPPER")]
    assert [is_server_event(e, "llama-uid", "llama") for e in shapeless] == [False] * 2
    mine = [
        event("Pod", "llama-0"),
        event("Pod", "llama-0-1"),
        event("Pod", "llama-12-3"),
        event("ReplicaSet", "llama-5b8c9f7d4"),
        event("Pod", "llama-5b8c9f7d4-q2wzx"),
    ]
    assert [is_server_event(e, "llama-uid", "llama", neighbours) for e in mine] == [True] * 5
    found = server_events(
        theirs + mine, uid="llama-uid", name="llama", limit=50, neighbours=neighbours
    )
    assert sorted(view.object for view in found) == sorted(
        f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}" for e in mine
    )


def test_events_come_newest_first_once_each_and_bounded() -> None:
    old = event(
        "Pod",
        f"{NAME}-76d6497696-7v4td",
        metadata={"uid": "e1"},
        lastTimestamp="2026-01-01T10:00:00Z",
        count=3,
        source={"component": "default-scheduler"},
    )
    # events.k8s.io's shape: eventTime and a series, no lastTimestamp.
    new = event(
        "ModelServe",
        NAME,
        uid=UID,
        metadata={"uid": "e2"},
        eventTime="2026-01-01T10:00:00.500000Z",
        series={"count": 2, "lastObservedTime": "2026-01-01T10:05:00.000001Z"},
        reportingComponent="modelserve-operator",
        type="Warning",
        reason="Degraded",
        message="0/1 ready",
    )
    found = server_events([old, new, old], uid=UID, name=NAME, limit=10)
    assert [(e.object, e.count, e.source) for e in found] == [
        (f"ModelServe/{NAME}", 2, "modelserve-operator"),
        (f"Pod/{NAME}-76d6497696-7v4td", 3, "default-scheduler"),
    ]
    assert (found[0].type, found[0].reason, found[0].message) == (
        "Warning",
        "Degraded",
        "0/1 ready",
    )
    assert found[0].first_seen == "2026-01-01T10:00:00.500000Z"
    assert found[1].type == "Normal"
    assert len(server_events([old, new], uid=UID, name=NAME, limit=1)) == 1


def test_conditions_are_read_as_written_and_untyped_ones_left_out() -> None:
    status = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "lastTransitionTime": "t"},
            {"status": "True"},
            "not a condition",
        ]
    }
    (ready,) = conditions(status)
    assert (ready.type, ready.status, ready.reason, ready.message) == ("Ready", "True", "Ready", "")
    assert ready.last_transition_time == "t"
    assert conditions({"conditions": None}) == []


def modelserve(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": NAME, "namespace": "ns", "uid": UID}, "spec": spec}


def test_what_cannot_be_scaled_by_hand_says_why() -> None:
    assert scale_refusal(modelserve(runtime="vllm", replicas=1)) is None
    autoscaled = scale_refusal(
        modelserve(runtime="vllm", autoscaling={"minReplicas": 0, "maxReplicas": 3})
    )
    assert autoscaled is not None and autoscaled.code == "server_autoscaled"
    assert "between 0 and 3" in str(autoscaled.detail)
    external = scale_refusal(modelserve(runtime="external"))
    assert external is not None and external.code == "server_not_scalable"
    deleting = modelserve(runtime="vllm")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    stopping = scale_refusal(deleting)
    assert stopping is not None and (stopping.status_code, stopping.code) == (
        409,
        "server_stopping",
    )
    assert scaled(modelserve(runtime="vllm", replicas=1), 3)["spec"] == {
        "runtime": "vllm",
        "replicas": 3,
    }
