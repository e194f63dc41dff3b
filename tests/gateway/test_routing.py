"""The route table as pure logic: ModelServe objects (and their Services' endpoints) in,
targets, lookups and endpoints out."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from modelserve.common.tokens import Claims
from modelserve.gateway.balancing import Endpoint
from modelserve.gateway.endpoints import ServiceSlice
from modelserve.gateway.routing import (
    NotReady,
    RouteTable,
    Target,
    Unknown,
    least_loaded,
    target_from_body,
)


def claims(sub: str, *, teams: tuple[str, ...] = (), roles: tuple[str, ...] = ()) -> Claims:
    now = int(time.time())
    return Claims(
        sub=sub,
        teams=list(teams),
        roles=list(roles),
        iss="modelserve",
        aud="modelserve",
        exp=now + 60,
        iat=now,
        jti="t",
    )


ALICE = claims("alice", teams=("nlp",))
CAROL = claims("carol", teams=("vision", "nlp"))
BOB = claims("bob")
ADMIN = claims("root", roles=("admin",))
SERVICE = claims("service:bench", roles=("service",))


def body(
    name: str,
    *,
    uid: str | None = None,
    namespace: str = "team-a",
    served: str | None = "qwen-7b",
    phase: str | None = "Ready",
    owner: str | None = "alice",
    team: str | None = "nlp",
    external: dict[str, Any] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    labels = {}
    if owner:
        labels["llm.modelserve.io/owner"] = owner
    if team:
        labels["llm.modelserve.io/team"] = team
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid or f"uid-{name}",
        "generation": 1,
        "labels": labels,
        "creationTimestamp": "2025-01-02T03:04:05Z",
    }
    if deleting:
        metadata["deletionTimestamp"] = "2025-01-02T04:00:00Z"
    spec: dict[str, Any] = {"runtime": "external" if external else "vllm"}
    if served:
        spec["model"] = {"servedName": served}
    if external:
        spec["external"] = external
    status = {}
    if phase:
        endpoint = (external or {}).get("url") or f"http://{name}.{namespace}.svc:8000/v1"
        status = {"phase": phase, "endpoint": endpoint, "message": f"it is {phase}"}
    return {"metadata": metadata, "spec": spec, "status": status}


PLATFORM = "modelserve"


def loaded() -> RouteTable:
    """A table that discovery has filled (with nothing, so far); the platform's servers
    are in `modelserve`."""
    table = RouteTable(platform_namespaces=[PLATFORM])
    table.synced = True
    return table


def add(table: RouteTable, server: dict[str, Any], *, ready: bool = True) -> Target:
    """The server in `table`, with one endpoint of its Service (ready or not)."""
    target = target_from_body(server)
    table.upsert(target)
    url = f"http://10.244.{len(target.namespace)}.{len(table)}:8000/v1"
    found = ServiceSlice(
        target.namespace, f"{target.name}-abcde", target.name, (Endpoint(url, ready=ready),)
    )
    table.endpoints.upsert(found)
    return target


def test_a_ready_server_becomes_a_target() -> None:
    target = target_from_body(body("qwen"))
    assert target.server_id == "uid-qwen"
    assert (target.namespace, target.name, target.served_name) == ("team-a", "qwen", "qwen-7b")
    assert target.endpoint == "http://qwen.team-a.svc:8000/v1"
    assert target.ready
    assert (target.owner, target.team) == ("alice", "nlp")
    assert target.created == 1735787045
    assert target.api_key_secret is None


def test_the_served_name_defaults_to_the_object_name() -> None:
    assert target_from_body(body("llama", served=None)).served_name == "llama"


EXTERNAL = {"url": "https://api.example.com/v1"}


@pytest.mark.parametrize(
    "changes",
    [{"phase": "Deploying"}, {"phase": None}, {"deleting": True}, {"phase": "Degraded"}],
)
def test_only_an_external_server_that_is_ready_and_stays_is_ready(
    changes: dict[str, Any],
) -> None:
    assert not target_from_body(body("qwen", external=EXTERNAL, **changes)).ready


@pytest.mark.parametrize("phase", ["Ready", "Degraded", "Deploying", None])
def test_a_server_of_pods_is_as_ready_as_its_endpoints(phase: str | None) -> None:
    """Degraded still has ready replicas, Deploying (a new spec) too: the endpoints decide."""
    table = loaded()
    add(table, body("a", phase=phase), ready=True)
    assert isinstance(table.lookup("qwen-7b", ALICE), Target)
    assert not target_from_body(body("a", phase=phase, deleting=True)).ready


def test_an_external_server_names_its_key_secret() -> None:
    external = {
        "url": "https://api.example.com/v1/",
        "apiKeySecretRef": {"name": "hosted-key", "key": "token"},
    }
    target = target_from_body(body("hosted", external=external))
    assert target.endpoint == "https://api.example.com/v1"
    assert target.api_key_secret == ("hosted-key", "token")
    with_key = dataclasses.replace(target, api_key="sk-secret")
    assert "sk-secret" not in repr(with_key)


def test_a_spec_that_does_not_validate_is_refused() -> None:
    broken = body("qwen")
    broken["spec"]["runtime"] = "teleport"
    with pytest.raises(ValueError):
        target_from_body(broken)


@pytest.mark.parametrize(
    ("who", "allowed"),
    [(ALICE, True), (CAROL, True), (BOB, False), (ADMIN, True), (SERVICE, True)],
)
def test_owner_team_admins_and_services_may_use_a_server(who: Claims, allowed: bool) -> None:
    assert target_from_body(body("qwen")).may_use(who) is allowed


def test_a_server_without_owner_is_for_admins_and_services() -> None:
    target = target_from_body(body("shared", owner=None, team=None))
    assert not target.may_use(ALICE)
    assert target.may_use(ADMIN)
    assert target.may_use(SERVICE)


def test_lookup_unknown_not_ready_and_ready() -> None:
    table = loaded()
    table.upsert(target_from_body(body("qwen", phase="Deploying")))
    assert table.lookup("llama", ALICE) == Unknown("llama")
    found = table.lookup("qwen-7b", ALICE)
    assert isinstance(found, NotReady)
    assert "team-a/qwen is Deploying" in found.message
    assert found.retry_after > 0
    add(table, body("qwen"))
    found = table.lookup("qwen-7b", ALICE)
    assert isinstance(found, Target)
    assert found.name == "qwen"


def test_before_discovery_has_listed_the_servers_nothing_is_unknown() -> None:
    table = RouteTable()
    found = table.lookup("qwen-7b", ALICE)
    assert isinstance(found, NotReady)
    assert found.message == "the gateway is still loading its routes"
    table.replace([add(table, body("qwen"))])
    table.synced = True
    assert isinstance(table.lookup("qwen-7b", ALICE), Target)
    assert table.lookup("llama", ALICE) == Unknown("llama")


def test_a_model_the_caller_may_not_use_is_unknown_to_them() -> None:
    table = loaded()
    table.upsert(target_from_body(body("qwen")))
    assert table.lookup("qwen-7b", BOB) == Unknown("qwen-7b")
    assert table.models(BOB) == []
    assert [t.served_name for t in table.models(ALICE)] == ["qwen-7b"]


def test_same_name_in_two_namespaces_keeps_tenants_apart() -> None:
    table = loaded()
    add(table, body("qwen", namespace="team-a"))
    add(table, body("qwen", uid="uid-b", namespace="team-b", owner="bob", team=None))
    for _ in range(4):
        mine = table.lookup("qwen-7b", BOB)
        assert isinstance(mine, Target)
        assert mine.namespace == "team-b"


def test_ready_servers_of_one_name_share_the_load() -> None:
    table = loaded()
    for name in ("a", "b", "c"):
        add(table, body(name))
    picked = []
    for _ in range(6):
        found = table.lookup("qwen-7b", ALICE)
        assert isinstance(found, Target)
        picked.append(found.name)
    assert sorted(picked) == ["a", "a", "b", "b", "c", "c"]  # round-robin when idle

    # A server's load is what its endpoints have in flight.
    busy = table.lookup("qwen-7b", ALICE)
    assert isinstance(busy, Target)
    (endpoint,) = table.endpoints_of(busy)
    table.endpoints.acquire(endpoint)
    table.endpoints.acquire(endpoint)
    for _ in range(4):
        found = table.lookup("qwen-7b", ALICE)
        assert isinstance(found, Target)
        assert found.name != busy.name
    table.endpoints.release(endpoint)
    table.endpoints.release(endpoint)
    table.endpoints.release(endpoint)  # one too many is harmless
    assert table.endpoints.load([endpoint]) == 0


def test_not_ready_servers_take_no_requests() -> None:
    table = loaded()
    add(table, body("a", phase="Failed"), ready=False)
    add(table, body("b"))
    for _ in range(3):
        found = table.lookup("qwen-7b", ALICE)
        assert isinstance(found, Target)
        assert found.name == "b"


def test_least_loaded_prefers_the_idle_and_rotates_ties() -> None:
    targets = [target_from_body(body(name)) for name in ("a", "b", "c")]
    load = {"uid-a": 3, "uid-b": 1, "uid-c": 1}
    assert {least_loaded(targets, load, turn).name for turn in range(6)} == {"b", "c"}
    assert least_loaded(targets, {}, 0).name == "a"
    assert least_loaded(targets, {}, 1).name == "b"


def test_remove_and_replace_by_namespace() -> None:
    table = loaded()
    table.upsert(target_from_body(body("a", namespace="one")))
    table.upsert(target_from_body(body("b", namespace="two")))
    table.replace([target_from_body(body("c", namespace="one"))], namespace="one")
    assert [t.served_name for t in table.models(ADMIN)] == ["qwen-7b"]
    assert table.server("uid-a") is None
    assert table.server("uid-c") is not None
    assert len(table) == 2
    table.remove("uid-b")
    table.remove("uid-missing")
    assert len(table) == 1
    table.replace([])
    assert len(table) == 0


def test_a_ready_server_without_a_ready_endpoint_takes_no_requests() -> None:
    table = loaded()
    waiting = add(table, body("a"), ready=False)
    found = table.lookup("qwen-7b", ALICE)
    assert isinstance(found, NotReady)
    assert "team-a/a has no ready endpoint" in found.message
    assert table.readiness(waiting) == found
    assert table.choose(waiting) is None
    add(table, body("b"))
    for _ in range(3):
        found = table.lookup("qwen-7b", ALICE)
        assert isinstance(found, Target)
        assert found.name == "b"


def test_a_server_in_the_cluster_is_ready_without_a_status_endpoint() -> None:
    # Requests go to its Service's endpoints, not to status.endpoint (a cluster DNS name).
    server = body("qwen")
    del server["status"]["endpoint"]
    assert target_from_body(server).ready
    external = body("hosted", external={"url": "https://api.example.com/v1"})
    del external["status"]["endpoint"]
    assert not target_from_body(external).ready


def test_endpoints_of_a_server() -> None:
    table = loaded()
    external = target_from_body(body("hosted", external={"url": "https://api.example.com/v1"}))
    assert table.endpoints_of(external) == (Endpoint("https://api.example.com/v1"),)
    assert table.serving(external)
    in_cluster = target_from_body(body("qwen"))
    assert table.endpoints_of(in_cluster) == ()
    assert not table.serving(in_cluster)
    add(table, body("qwen"))
    (endpoint,) = table.endpoints_of(in_cluster)
    assert table.choose(in_cluster) == endpoint
    assert table.choose(in_cluster, exclude=[endpoint.url]) is None


# --- Nobody captures another's traffic: tiers of servers of one served name ---------------

DORA = claims("dora")  # in no team, owns nothing: platform servers only


def served_by(table: RouteTable, model: str, who: Claims, times: int = 6) -> set[str]:
    """The servers (namespace/name) that `times` lookups of `model` by `who` went to."""
    found = set()
    for _ in range(times):
        target = table.lookup(model, who)
        assert isinstance(target, Target), target
        found.add(f"{target.namespace}/{target.name}")
    return found


def test_a_team_mates_server_of_the_same_name_never_takes_my_traffic() -> None:
    """carol (team nlp) serves `qwen-7b` for the team too: alice's requests stay on
    alice's own server, carol's on carol's; a team member without one shares both."""
    table = loaded()
    add(table, body("alice-qwen"))
    add(table, body("carol-qwen", namespace="team-c", owner="carol"))
    assert served_by(table, "qwen-7b", ALICE) == {"team-a/alice-qwen"}
    assert served_by(table, "qwen-7b", CAROL) == {"team-c/carol-qwen"}
    dave = claims("dave", teams=("nlp",))
    assert served_by(table, "qwen-7b", dave) == {"team-a/alice-qwen", "team-c/carol-qwen"}


def test_a_users_server_never_replaces_a_platform_one() -> None:
    """bob serves `llama` under the platform model's name: only bob's requests reach it."""
    table = loaded()
    add(table, body("llama", namespace=PLATFORM, served="llama", owner="root", team=None))
    add(table, body("bobs-llama", namespace="team-b", served="llama", owner="bob", team=None))
    for who in (ALICE, DORA, ADMIN, SERVICE):
        assert served_by(table, "llama", who) == {f"{PLATFORM}/llama"}, who.sub
    assert served_by(table, "llama", BOB) == {"team-b/bobs-llama"}
    assert [t.namespace for t in table.models(DORA)] == [PLATFORM]
    assert [t.namespace for t in table.models(BOB)] == ["team-b"]


def test_a_team_mate_cannot_take_over_a_name_the_platform_serves() -> None:
    """carol (team nlp) serves `llama` for her team: alice, in that team with no `llama`
    of her own, keeps reaching the platform's; carol reaches her own."""
    table = loaded()
    add(table, body("llama", namespace=PLATFORM, served="llama", owner="root", team=None))
    add(table, body("carol-llama", namespace="team-c", served="llama", owner="carol"))
    assert served_by(table, "llama", ALICE) == {f"{PLATFORM}/llama"}
    assert served_by(table, "llama", CAROL) == {"team-c/carol-llama"}


def test_platform_servers_are_for_everyone_others_without_owner_for_admins() -> None:
    table = loaded()
    platform = add(table, body("shared", namespace=PLATFORM, owner=None, team=None))
    elsewhere = add(table, body("kubectl", namespace="ops", served="ops", owner=None, team=None))
    stored = table.server(platform.server_id)  # the table marks where it is
    assert stored is not None and stored.platform and stored.may_use(DORA)
    assert not elsewhere.may_use(DORA)
    assert table.lookup("ops", DORA) == Unknown("ops")
    assert served_by(table, "ops", ADMIN) == {"ops/kubectl"}


def test_a_nearer_tier_that_is_not_ready_does_not_fall_through() -> None:
    """alice's own server is down: her requests wait for it (503), never go to another's."""
    table = loaded()
    add(table, body("alice-qwen", phase="Failed"), ready=False)
    add(table, body("llama", namespace=PLATFORM, owner="root", team=None))
    found = table.lookup("qwen-7b", ALICE)
    assert isinstance(found, NotReady)
    assert "team-a/alice-qwen" in found.message


def test_admins_and_services_prefer_platform_servers_to_other_users() -> None:
    table = loaded()
    add(table, body("llama", namespace=PLATFORM, owner="root", team=None, served="llama"))
    add(table, body("bob", namespace="team-b", served="llama", owner="bob", team=None))
    add(table, body("carl", namespace="team-b", served="only-carl", owner="carl", team=None))
    for who in (ADMIN, SERVICE):
        assert served_by(table, "llama", who) == {f"{PLATFORM}/llama"}
        assert served_by(table, "only-carl", who) == {"team-b/carl"}


def test_the_gateways_own_lookups_see_platform_servers_only() -> None:
    """A reward model named by a ModelServe: bob's server of that name is never used."""
    table = loaded()
    add(table, body("bobs-prm", namespace="team-b", served="prm", owner="bob", team=None))
    assert table.find("prm") == Unknown("prm")
    add(table, body("prm", namespace=PLATFORM, served="prm", owner=None, team=None))
    for _ in range(4):
        found = table.find("prm")
        assert isinstance(found, Target)
        assert (found.namespace, found.name) == (PLATFORM, "prm")
