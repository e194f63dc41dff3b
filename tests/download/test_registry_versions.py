"""Active versions, their history and automatic rollbacks, on the real service,
PostgreSQL and MinIO."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modelserve.testbed.objectstores import MinioServer

pytestmark = [pytest.mark.postgres, pytest.mark.minio]

Wait = Callable[..., dict[str, Any]]


@pytest.fixture
def versions(
    admin: httpx.Client, platform_store: MinioServer, platform_bucket: str, wait_finished: Wait
) -> Callable[..., list[dict[str, Any]]]:
    """`versions(client, name, *ids)`: ready versions of `name` registered by `client`."""

    def make(client: httpx.Client, name: str, *ids: str) -> list[dict[str, Any]]:
        records = []
        for model_id in ids:
            key = f"ck/{model_id}.gguf"
            platform_store.put(platform_bucket, key, b"GGUF" + model_id.encode())
            body = {"id": model_id, "name": name, "uri": f"s3://{platform_bucket}/{key}"}
            answer = client.post("/models/register", json=body)
            assert answer.status_code == 202, answer.text
            assert wait_finished(client, model_id)["state"] == "ready"
            records.append(client.get(f"/models/{model_id}").json())
        return records

    return make


def test_set_active_moves_the_pointer_and_writes_history(
    admin: httpx.Client, versions: Callable[..., list[dict[str, Any]]]
) -> None:
    v1, v2 = versions(admin, "trainee", "t-v1", "t-v2")
    assert admin.get("/models/active").json() == []

    first = admin.post("/models/set_active", json={"id": "t-v1"})
    assert first.status_code == 200, first.text
    assert first.json() | {"history_id": 0} == {
        "name": "trainee",
        "id": "t-v1",
        "uri": v1["uri"],
        "previous": None,
        "history_id": 0,
        "changed": True,
    }
    second = admin.post("/models/set_active", json={"id": "t-v2", "reason": "step 2 is better"})
    assert second.json()["previous"] == {"id": "t-v1", "uri": v1["uri"]}
    assert second.json()["changed"] is True
    # Idempotent: asked again, nothing new.
    repeat = admin.post("/models/set_active", json={"id": "t-v2"})
    assert repeat.json()["changed"] is False
    assert repeat.json()["history_id"] == second.json()["history_id"]
    assert repeat.json()["previous"] == {"id": "t-v1", "uri": v1["uri"]}

    (active,) = admin.get("/models/active").json()
    assert (active["name"], active["id"], active["uri"]) == ("trainee", "t-v2", v2["uri"])
    assert (active["set_by"], active["last_rollback"]) == ("root", None)
    assert active["history_id"] == second.json()["history_id"]
    assert admin.get("/models/active", params={"name": "other"}).json() == []

    # Back to an earlier version: a manual rollback, a set_active like any other.
    back = admin.post("/models/set_active", json={"id": "t-v1"})
    assert back.json()["previous"]["id"] == "t-v2"
    history = admin.get("/models/history", params={"name": "trainee"})
    assert history.headers["X-Total-Count"] == "3"
    rows = [(h["action"], h["from_id"], h["to_id"], h["actor"]) for h in history.json()]
    assert rows == [
        ("set_active", "t-v2", "t-v1", "root"),
        ("set_active", "t-v1", "t-v2", "root"),
        ("set_active", None, "t-v1", "root"),
    ]
    assert history.json()[1]["reason"] == "step 2 is better"
    page = admin.get("/models/history", params={"limit": 1, "offset": 1}).json()
    assert [h["to_id"] for h in page] == ["t-v2"]


def test_bad_set_active_and_who_may(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    versions: Callable[..., list[dict[str, Any]]],
) -> None:
    alice, bob = client("alice"), client("bob")
    versions(alice, "alice-model", "a-v1", "a-v2")
    versions(admin, "shared", "s-v1")
    for body, status, code in (
        ({"id": "nope"}, 404, "model_not_found"),
        ({"id": "../x"}, 404, "model_not_found"),
        ({}, 422, "invalid_request"),
        ({"id": "a-v1", "reason": "a\x00b"}, 422, "invalid_request"),
    ):
        answer = alice.post("/models/set_active", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"]["code"] == code
    # Bob cannot see Alice's versions: neither set them nor see them active.
    assert alice.post("/models/set_active", json={"id": "a-v1"}).status_code == 200
    refused = bob.post("/models/set_active", json={"id": "a-v2"})
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_found"
    assert bob.get("/models/active").json() == []
    assert bob.get("/models/history").json() == []
    assert [a["name"] for a in alice.get("/models/active").json()] == ["alice-model"]
    # Admins see and set everything.
    assert admin.post("/models/set_active", json={"id": "s-v1"}).status_code == 200
    assert [a["name"] for a in admin.get("/models/active").json()] == ["alice-model", "shared"]
    assert alice.post("/models/set_active", json={"id": "s-v1"}).status_code == 404


def test_rollbacks_are_recorded_once_and_move_the_pointer_only_if_it_did_not_move_on(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    versions: Callable[..., list[dict[str, Any]]],
) -> None:
    operator = client("service:operator", roles=("service",))
    v1, v2, v3 = versions(admin, "trainee", "r-v1", "r-v2", "r-v3")
    admin.post("/models/set_active", json={"id": "r-v1"})
    rollout = admin.post("/models/set_active", json={"id": "r-v2"}).json()["history_id"]
    report = {
        "rollout_id": rollout,
        "server": "team-a/trainee",
        "server_uid": "uid-1",
        "failed_id": "r-v2",
        "restored_id": "r-v1",
        "reason": "rollout_failed",
        "message": "r-v2 did not become Ready in 300 s: CrashLoopBackOff",
        "platform_server": True,
    }
    # Only platform services report rollbacks.
    for caller in (admin, client("alice")):
        refused = caller.post("/models/rollbacks", json=report)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "service_only"

    recorded = operator.post("/models/rollbacks", json=report)
    assert recorded.status_code == 201, recorded.text
    answer = recorded.json()
    assert (answer["pointer_moved"], answer["duplicate"]) == (True, False)
    entry = answer["entry"]
    assert (entry["actor"], entry["action"], entry["from_id"], entry["to_id"]) == (
        "platform",
        "automatic_rollback",
        "r-v2",
        "r-v1",
    )
    assert (entry["rollout_id"], entry["server"], entry["server_uid"]) == (
        rollout,
        "team-a/trainee",
        "uid-1",
    )
    (active,) = admin.get("/models/active").json()
    assert (active["id"], active["uri"], active["set_by"]) == ("r-v1", v1["uri"], "platform")
    last = active["last_rollback"]
    assert (last["history_id"], last["failed_id"], last["restored_id"]) == (
        entry["id"],
        "r-v2",
        "r-v1",
    )
    assert last["reason"] == "rollout_failed" and "CrashLoopBackOff" in last["message"]

    # The same report again (another replica, a retry): the first record, nothing moves.
    repeat = operator.post("/models/rollbacks", json=report)
    assert repeat.status_code == 200
    assert repeat.json()["duplicate"] is True
    assert repeat.json()["entry"] == entry
    history = admin.get("/models/history", params={"name": "trainee"}).json()
    assert [h["action"] for h in history] == ["automatic_rollback", "set_active", "set_active"]

    # A second server of the same rollout reports after someone moved on to r-v3: recorded,
    # but the pointer stays where the person put it.
    admin.post("/models/set_active", json={"id": "r-v3"})
    late = operator.post("/models/rollbacks", json={**report, "server_uid": "uid-2"})
    assert late.status_code == 201
    assert late.json()["pointer_moved"] is False
    assert late.json()["entry"]["pointer_moved"] is False
    (active,) = admin.get("/models/active").json()
    assert (active["id"], active["uri"]) == ("r-v3", v3["uri"])
    assert active["last_rollback"]["history_id"] == late.json()["entry"]["id"]
    assert v2["name"] == "trainee"


def test_bad_rollback_reports(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    versions: Callable[..., list[dict[str, Any]]],
) -> None:
    operator = client("service:operator", roles=("service",))
    versions(admin, "trainee", "b-v1", "b-v2")
    versions(admin, "other", "o-v1")
    admin.post("/models/set_active", json={"id": "b-v1"})
    rollout = admin.post("/models/set_active", json={"id": "b-v2"}).json()["history_id"]
    base = {"rollout_id": rollout, "server": "ns/s", "server_uid": "u", "failed_id": "b-v2"}
    base["platform_server"] = True
    for body, status, code in (
        ({**base, "rollout_id": 999_999}, 404, "rollout_not_found"),
        ({**base, "failed_id": "o-v1"}, 422, "not_this_rollout"),
        ({**base, "restored_id": "nope"}, 422, "not_this_rollout"),
        # Versions of the name, but not the ones this rollout changed.
        ({**base, "failed_id": "b-v1", "restored_id": "b-v2"}, 422, "not_this_rollout"),
        ({**base, "restored_id": "b-v2"}, 422, "not_this_rollout"),
        ({k: v for k, v in base.items() if k != "server_uid"}, 422, "invalid_request"),
        ({**base, "rollout_id": "x"}, 422, "invalid_request"),
    ):
        answer = operator.post("/models/rollbacks", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"]["code"] == code
    # With nothing to restore (the name's first rollout failed), the pointer goes away.
    first = admin.post("/models/set_active", json={"id": "o-v1"}).json()["history_id"]
    removed = operator.post(
        "/models/rollbacks",
        json={
            "rollout_id": first,
            "server": "ns/o",
            "server_uid": "u",
            "failed_id": "o-v1",
            "server_owner": "root",
        },  # the actor's own server
    )
    assert removed.status_code == 201, removed.text
    assert removed.json()["pointer_moved"] is True
    assert [a["name"] for a in admin.get("/models/active").json()] == ["trainee"]


def test_a_tenants_server_rolled_by_an_admin_rolls_back_only_itself(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    versions: Callable[..., list[dict[str, Any]]],
) -> None:
    """An admin's set_active rolls every server of the name, tenants' too; a tenant can
    make theirs fail at will (a bad flag), so its rollback moves no one else's version:
    only the platform's servers and the actor's own do."""
    operator = client("service:operator", roles=("service",))
    versions(admin, "shared", "s-v1", "s-v2")
    admin.post("/models/set_active", json={"id": "s-v1"})
    rollout = admin.post("/models/set_active", json={"id": "s-v2"}).json()["history_id"]
    report = {"rollout_id": rollout, "server": "team-c/mine", "server_uid": "uid-c",
              "failed_id": "s-v2", "server_owner": "carol"}  # fmt: skip
    for body in (report, {k: v for k, v in report.items() if k != "server_owner"}):
        refused = operator.post("/models/rollbacks", json=body)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "not_the_actors_server"
    (active,) = admin.get("/models/active", params={"name": "shared"}).json()
    assert (active["id"], active["last_rollback"]) == ("s-v2", None)
    history = admin.get("/models/history", params={"name": "shared"}).json()
    assert [h["action"] for h in history] == ["set_active", "set_active"]
    # The actor's own server, or one of the platform's: the name goes back.
    mine = {**report, "server_uid": "uid-r", "server_owner": "root"}
    assert operator.post("/models/rollbacks", json=mine).json()["pointer_moved"] is True


def test_a_report_without_restored_id_restores_the_rollouts_from_id(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    versions: Callable[..., list[dict[str, Any]]],
) -> None:
    operator = client("service:operator", roles=("service",))
    versions(admin, "trainee", "n-v1", "n-v2")
    admin.post("/models/set_active", json={"id": "n-v1"})
    rollout = admin.post("/models/set_active", json={"id": "n-v2"}).json()["history_id"]
    report = {"rollout_id": rollout, "server": "ns/s", "server_uid": "u", "failed_id": "n-v2"}
    report["platform_server"] = True
    answer = operator.post("/models/rollbacks", json=report)
    assert answer.status_code == 201, answer.text
    assert (answer.json()["entry"]["to_id"], answer.json()["pointer_moved"]) == ("n-v1", True)
    assert admin.get("/models/active").json()[0]["id"] == "n-v1"


def test_set_active_of_the_active_version_answers_the_set_active_that_made_it(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    versions: Callable[..., list[dict[str, Any]]],
) -> None:
    """After an automatic rollback the pointer's history_id is the rollback's; the answer
    is a rollout id the servers can run and a rollback report can name."""
    operator = client("service:operator", roles=("service",))
    versions(admin, "trainee", "u-v1", "u-v2")
    made = admin.post("/models/set_active", json={"id": "u-v1"}).json()["history_id"]
    rollout = admin.post("/models/set_active", json={"id": "u-v2"}).json()["history_id"]
    report = {"rollout_id": rollout, "server": "ns/s", "server_uid": "u", "failed_id": "u-v2"}
    report["platform_server"] = True
    rolled = operator.post("/models/rollbacks", json={**report, "restored_id": "u-v1"}).json()
    (active,) = admin.get("/models/active").json()
    assert active["history_id"] == rolled["entry"]["id"]  # the pointer's: the rollback

    again = admin.post("/models/set_active", json={"id": "u-v1"}).json()
    assert (again["changed"], again["history_id"], again["previous"]) == (False, made, None)
    # Its rollout id is a set_active a report may name (404 rollout_not_found before).
    later = {**report, "rollout_id": made, "failed_id": "u-v1", "server_uid": "u2"}
    assert operator.post("/models/rollbacks", json=later).status_code == 201


def test_users_see_the_changes_whose_versions_they_may_both_see(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    versions: Callable[..., list[dict[str, Any]]],
) -> None:
    operator = client("service:operator", roles=("service",))
    alice = client("alice")
    versions(alice, "alice-model", "h-v1")
    versions(admin, "alice-model", "h-admin")  # an admin may add to any name
    first = admin.post("/models/set_active", json={"id": "h-v1"}).json()["history_id"]
    rollout = admin.post("/models/set_active", json={"id": "h-admin"}).json()["history_id"]
    report = {"rollout_id": rollout, "server": "ns/s", "server_uid": "u", "failed_id": "h-admin"}
    report["platform_server"] = True
    assert operator.post("/models/rollbacks", json=report).status_code == 201

    history = alice.get("/models/history")
    assert [h["id"] for h in history.json()] == [first]
    assert history.headers["X-Total-Count"] == "1"
    (active,) = alice.get("/models/active").json()
    assert (active["id"], active["last_rollback"]) == ("h-v1", None)
    # Admins see it all; a page past the end still counts.
    assert admin.get("/models/active").json()[0]["last_rollback"]["failed_id"] == "h-admin"
    past = admin.get("/models/history", params={"offset": 10})
    assert (past.json(), past.headers["X-Total-Count"]) == ([], "3")
    assert alice.get("/models/history", params={"offset": 5}).headers["X-Total-Count"] == "1"


def test_set_active_again_names_the_previous_version_only_to_who_may_see_it(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    versions: Callable[..., list[dict[str, Any]]],
    download_database: str,
    upstream_store: MinioServer,
    upstream_bucket: str,
    wait_finished: Wait,
) -> None:
    """An admin's registered version, then a download, active in turn under one name: a
    user who sees the download alone learns nothing of the version before it."""
    import psycopg

    versions(admin, "shared", "adm-1")
    assert admin.post("/models/set_active", json={"id": "adm-1"}).status_code == 200
    upstream_store.put(upstream_bucket, "shared/model.gguf", b"GGUF" + bytes(32))
    body = {"key": "shared/model.gguf", "model_id": "dl-2", "name": "shared"}
    assert admin.post("/downloads", json=body).status_code == 202
    assert wait_finished(admin, "dl-2")["state"] == "ready"
    with psycopg.connect(download_database, autocommit=True) as conn:  # as bob's download would
        conn.execute("INSERT INTO download_requesters (model_id, subject) VALUES ('dl-2', 'bob')")
    assert admin.post("/models/set_active", json={"id": "dl-2"}).json()["changed"] is True

    again = client("bob").post("/models/set_active", json={"id": "dl-2"})
    assert again.status_code == 200, again.text
    assert (again.json()["changed"], again.json()["previous"]) == (False, None)
    seen = admin.post("/models/set_active", json={"id": "dl-2"}).json()
    assert seen["previous"]["id"] == "adm-1"
