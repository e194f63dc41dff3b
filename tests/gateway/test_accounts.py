"""Users, teams and API keys of the gateway, on real PostgreSQL, through its HTTP API."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from modelserve.common.database import sqlalchemy_url
from modelserve.common.tokens import DEVELOPMENT_SECRET
from modelserve.gateway import accounts, migrations
from modelserve.testbed.platform import RunningService
from modelserve.testbed.processes import StartupError

if TYPE_CHECKING:  # fixtures' types: conftest modules are pytest's to import
    from tests.gateway.conftest import AccountsGateway, Person

pytestmark = pytest.mark.postgres

NewPerson = Callable[..., "Person"]
TABLES = {
    "alembic_version",
    "api_keys",
    "memberships",
    "teams",
    "users",
    "usage_outbox",
    "arena_battles",
    "arena_votes",
}
HEAD = "0004"  # the newest migration


def _rows(database: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database) as conn:
        return conn.execute(query, params).fetchall()


def _token(url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/auth/token", json={"username": username, "password": password})


# --- the first admin, and how the gateway starts -------------------------------------------


def test_the_first_admin_comes_from_configuration_with_an_argon2_hash(
    accounts_gateway: AccountsGateway, new_person: NewPerson
) -> None:
    person = new_person()
    rows = _rows(
        accounts_gateway.database,
        "SELECT username, role, password_hash FROM users WHERE username IN (%s, %s)",
        "admin",
        person.username,
    )
    found = {username: (role, password_hash) for username, role, password_hash in rows}
    assert (found["admin"][0], found[person.username][0]) == ("admin", "user")
    passwords = {"admin": accounts_gateway.admin_password, person.username: person.password}
    for username, (_, password_hash) in found.items():
        # Argon2id, with at least the memory of RFC 9106's second recommended option.
        assert password_hash.startswith("$argon2id$")
        assert extract_parameters(password_hash).memory_cost >= 64 * 1024
        assert PasswordHasher().verify(password_hash, passwords[username])
        assert passwords[username] not in password_hash


def test_without_an_admin_password_there_is_no_admin_outside_development(
    start_gateway: Callable[..., RunningService], gateway_database: str
) -> None:
    gateway = start_gateway(GATEWAY_ADMIN_PASSWORD="")
    assert _token(gateway.url, "admin", "admin").status_code == 401
    assert _rows(gateway_database, "SELECT username FROM users") == []
    assert "no first admin" in gateway.process.log_path.read_text()


def test_development_mode_has_admin_admin(start_gateway: Callable[..., RunningService]) -> None:
    gateway = start_gateway(
        GATEWAY_ADMIN_PASSWORD="", MODELSERVE_DEVELOPMENT="true", JWT_SECRET=DEVELOPMENT_SECRET
    )
    answer = _token(gateway.url, "admin", "admin")
    assert answer.status_code == 200, answer.text
    me = httpx.get(
        f"{gateway.url}/auth/me",
        headers={"Authorization": f"Bearer {answer.json()['access_token']}"},
    )
    assert me.json()["roles"] == ["admin"]


def test_a_short_admin_password_is_refused_outside_development(
    start_gateway: Callable[..., RunningService],
) -> None:
    with pytest.raises(StartupError, match="GATEWAY_ADMIN_PASSWORD needs at least 8"):
        start_gateway(GATEWAY_ADMIN_PASSWORD="admin")


def test_alembic_makes_the_schema_replicas_start_together_and_a_restart_changes_nothing(
    start_gateway: Callable[..., RunningService], gateway_database: str, gateway_env: dict[str, str]
) -> None:
    password = gateway_env["GATEWAY_ADMIN_PASSWORD"]
    with ThreadPoolExecutor(2) as pool:  # two replicas migrating one empty schema at once
        first, second = pool.map(lambda _: start_gateway(), range(2))
    schema = _rows(gateway_database, "SELECT current_schema()")[0][0]
    tables = _rows(
        gateway_database,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
        schema,
    )
    assert {name for (name,) in tables} == TABLES
    assert _rows(gateway_database, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert _rows(gateway_database, "SELECT username FROM users") == [("admin",)]
    for gateway in (first, second):
        assert _token(gateway.url, "admin", password).status_code == 200
        gateway.stop()

    third = start_gateway(GATEWAY_ADMIN_PASSWORD="another-password-entirely")
    assert _rows(gateway_database, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    # The admin existed already: the new setting does not reset the password.
    assert _token(third.url, "admin", password).status_code == 200
    assert _rows(gateway_database, "SELECT count(*) FROM users") == [(1,)]


def test_the_tables_match_the_migrations(gateway_database: str) -> None:
    """What autogenerate would write for a new revision: nothing, as long as the models of
    `accounts` and the migrations agree."""
    migrations.upgrade(gateway_database)
    engine = create_engine(sqlalchemy_url(gateway_database))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    # Other services' tables share SQLModel's metadata.
                    "include_object": lambda _, name, kind, *__: (
                        kind != "table" or name in accounts.ACCOUNT_TABLES
                    ),
                },
            )
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()


# --- users and teams -------------------------------------------------------------------


ADMIN_ONLY = [
    ("GET", "/users", None),
    ("POST", "/users", {"username": "mallory", "password": "mallory-password"}),
    ("GET", "/users/admin", None),
    ("PATCH", "/users/admin", {"disabled": True}),
    ("GET", "/teams", None),
    ("POST", "/teams", {"name": "mallory-team"}),
    ("DELETE", "/teams/any", None),
    ("PUT", "/teams/any/members/admin", None),
    ("DELETE", "/teams/any/members/admin", None),
    ("PUT", "/users/admin/password", {"password": "mallory-password"}),
]


def test_admin_routes_refuse_users_with_403(new_person: NewPerson) -> None:
    person = new_person()
    for method, path, body in ADMIN_ONLY:
        answer = person.client.request(method, path, json=body)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["error"]["code"] == "admin_only"


def test_teams_and_roles_reach_tokens(
    accounts_gateway: AccountsGateway, accounts_admin: httpx.Client, new_person: NewPerson
) -> None:
    for team in ("nlp-x", "vision-x"):
        assert accounts_admin.post("/teams", json={"name": team}).status_code == 201
    assert accounts_admin.post("/teams", json={"name": "nlp-x"}).status_code == 409
    person = new_person(teams=("vision-x", "nlp-x"))
    # The first team is the default one: the order is kept.
    assert person.client.get("/auth/me").json()["teams"] == ["vision-x", "nlp-x"]

    update = {"role": "admin", "teams": ["nlp-x"]}
    changed = accounts_admin.patch(f"/users/{person.username}", json=update)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["role"], changed.json()["teams"]) == ("admin", ["nlp-x"])
    token = accounts_gateway.sign_in(person.username, person.password)
    with accounts_gateway.client(token) as client:
        me = client.get("/auth/me").json()
        assert (me["roles"], me["teams"]) == (["admin"], ["nlp-x"])
        assert client.get("/users").status_code == 200

    added = accounts_admin.put(f"/teams/vision-x/members/{person.username}")
    assert person.username in added.json()["members"]
    assert accounts_admin.put(f"/teams/vision-x/members/{person.username}").status_code == 200
    removed = accounts_admin.delete(f"/teams/nlp-x/members/{person.username}")
    assert person.username not in removed.json()["members"]
    assert accounts_admin.delete("/teams/vision-x").status_code == 204
    assert accounts_admin.get(f"/users/{person.username}").json()["teams"] == []
    assert accounts_admin.get("/teams/vision-x").status_code == 404


BAD_USER_REQUESTS: dict[str, tuple[str, str, dict[str, Any] | None, int, str]] = {
    "name taken": (
        "POST",
        "/users",
        {"username": "admin", "password": "a-password"},
        409,
        "user_exists",
    ),
    "unknown team": (
        "POST",
        "/users",
        {"username": "ghost", "password": "a-password", "teams": ["ghosts"]},
        422,
        "team_not_found",
    ),
    "bad name": (
        "POST",
        "/users",
        {"username": "Bob:1", "password": "a-password"},
        422,
        "invalid_request",
    ),
    "short password": (
        "POST",
        "/users",
        {"username": "shorty", "password": "abc"},
        422,
        "invalid_request",
    ),
    "unknown role": (
        "POST",
        "/users",
        {"username": "king", "password": "a-password", "role": "king"},
        422,
        "invalid_request",
    ),
    "unknown user": ("GET", "/users/nobody-here", None, 404, "user_not_found"),
    "NUL in a name": ("GET", "/users/a%00b", None, 422, "invalid_request"),
    "unknown team to join": ("PUT", "/teams/nope/members/admin", None, 404, "team_not_found"),
    "unknown member": ("DELETE", "/teams/nope/members/admin", None, 404, "team_not_found"),
    "team name taken": ("POST", "/teams", {"name": "taken"}, 409, "team_exists"),
    "unknown key": ("DELETE", "/auth/keys/nope", None, 404, "key_not_found"),
}


@pytest.mark.parametrize("case", BAD_USER_REQUESTS)
def test_bad_user_requests_get_their_own_errors(accounts_admin: httpx.Client, case: str) -> None:
    accounts_admin.post("/teams", json={"name": "taken"})
    method, path, body, status, code = BAD_USER_REQUESTS[case]
    answer = accounts_admin.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    if body and "username" in body and status != 409:
        # Nothing half made.
        assert accounts_admin.get(f"/users/{body['username']}").status_code == 404


def test_a_disabled_user_can_neither_sign_in_nor_use_keys(
    accounts_gateway: AccountsGateway, accounts_admin: httpx.Client, new_person: NewPerson
) -> None:
    person = new_person()
    key = person.client.post("/auth/keys", json={"name": "ci"}).json()["key"]
    with accounts_gateway.client(key) as program:
        assert program.get("/auth/me").status_code == 200
        disabled = accounts_admin.patch(f"/users/{person.username}", json={"disabled": True})
        assert disabled.json()["disabled"] is True
        assert program.get("/auth/me").status_code == 401
    wrong = _token(accounts_gateway.url, person.username, "not-the-password")
    refused = _token(accounts_gateway.url, person.username, person.password)
    assert refused.status_code == 401
    assert refused.json() == wrong.json()  # nothing says the account exists
    accounts_admin.patch(f"/users/{person.username}", json={"disabled": False})
    assert _token(accounts_gateway.url, person.username, person.password).status_code == 200


def test_people_change_their_own_password_only_knowing_it(
    accounts_gateway: AccountsGateway, accounts_admin: httpx.Client, new_person: NewPerson
) -> None:
    alice, bob = new_person(), new_person()
    path = f"/users/{alice.username}/password"
    wrong = alice.client.put(path, json={"password": "new-password-1", "current_password": "x"})
    assert wrong.status_code == 403
    assert bob.client.put(path, json={"password": "new-password-1"}).status_code == 403
    changed = alice.client.put(
        path, json={"password": "new-password-1", "current_password": alice.password}
    )
    assert changed.status_code == 204, changed.text
    assert _token(accounts_gateway.url, alice.username, alice.password).status_code == 401
    assert _token(accounts_gateway.url, alice.username, "new-password-1").status_code == 200
    assert accounts_admin.put(path, json={"password": "new-password-2"}).status_code == 204
    assert _token(accounts_gateway.url, alice.username, "new-password-2").status_code == 200
    assert (
        accounts_admin.put(
            "/users/nobody-here/password", json={"password": "a-password"}
        ).status_code
        == 404
    )


# --- API keys --------------------------------------------------------------------------


def test_an_api_key_is_shown_once_and_works_like_a_token(
    accounts_gateway: AccountsGateway, accounts_admin: httpx.Client, new_person: NewPerson
) -> None:
    accounts_admin.post("/teams", json={"name": "keys-team"})
    person = new_person(teams=("keys-team",))
    created = person.client.post("/auth/keys", json={"name": "ci", "expires_in_days": 30})
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["key"].startswith(f"msk_{key['id']}_")
    expires_in = time.time() + 30 * 86400 - dt.datetime.fromisoformat(key["expires_at"]).timestamp()
    assert abs(expires_in) < 120

    listed = person.client.get("/auth/keys")
    assert [entry["id"] for entry in listed.json()] == [key["id"]]
    assert "key" not in listed.json()[0]
    assert key["key"].split("_")[-1] not in listed.text

    # Stored as the SHA-256 of its secret, nothing else of it.
    secret = key["key"].rsplit("_", 1)[1]
    rows = _rows(
        accounts_gateway.database, "SELECT secret_sha256 FROM api_keys WHERE id = %s", key["id"]
    )
    assert rows == [(hashlib.sha256(secret.encode()).digest(),)]

    with accounts_gateway.client(key["key"]) as program:
        me = program.get("/auth/me")
        assert me.status_code == 200, me.text
        assert me.json()["username"] == person.username
        assert (me.json()["roles"], me.json()["teams"]) == (["user"], ["keys-team"])
        assert me.json()["api_key"] == key["id"]
        assert program.get("/users").status_code == 403  # a user's key is a user's
        # A key makes no keys: one would outlive the other's expiry and revocation.
        minted = program.post("/auth/keys", json={"name": "forever"})
        assert minted.status_code == 403, minted.text
        assert minted.json()["error"]["code"] == "key_cannot_create_keys"
        assert [k["id"] for k in person.client.get("/auth/keys").json()] == [key["id"]]

        assert person.client.delete(f"/auth/keys/{key['id']}").status_code == 204
        revoked = program.get("/auth/me")
        assert revoked.status_code == 401
        assert revoked.json()["error"]["code"] == "token_invalid"
    assert person.client.get("/auth/keys").json() == []
    assert person.client.delete(f"/auth/keys/{key['id']}").status_code == 404


def test_another_users_key_is_neither_listed_nor_revoked(
    accounts_gateway: AccountsGateway, accounts_admin: httpx.Client, new_person: NewPerson
) -> None:
    alice, bob = new_person(), new_person()
    key = alice.client.post("/auth/keys", json={"name": "alice's"}).json()
    assert bob.client.get("/auth/keys").json() == []
    refused = bob.client.delete(f"/auth/keys/{key['id']}")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "key_not_found"
    with accounts_gateway.client(key["key"]) as program:
        assert program.get("/auth/me").status_code == 200
        assert accounts_admin.delete(f"/auth/keys/{key['id']}").status_code == 204  # admins may
        assert program.get("/auth/me").status_code == 401


def test_a_key_with_a_wrong_secret_or_bad_options_is_refused(
    accounts_gateway: AccountsGateway, new_person: NewPerson
) -> None:
    person = new_person()
    key = person.client.post("/auth/keys", json={"name": "k"}).json()["key"]
    forged = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    with accounts_gateway.client(forged) as program:
        assert program.get("/auth/me").status_code == 401
    for body in ({"name": ""}, {"name": "k", "expires_in_days": 0}, {}):
        answer = person.client.post("/auth/keys", json=body)
        assert answer.status_code == 422, (body, answer.text)


def test_a_lost_team_or_a_new_password_revokes_tokens_at_once(
    accounts_gateway: AccountsGateway, accounts_admin: httpx.Client, new_person: NewPerson
) -> None:
    accounts_admin.post("/teams", json={"name": "revoking-team"})
    person = new_person(teams=("revoking-team",))
    assert person.client.get("/auth/me").status_code == 200
    removed = accounts_admin.delete(f"/teams/revoking-team/members/{person.username}")
    assert removed.status_code == 200, removed.text
    revoked = person.client.get("/auth/me")  # on this replica: at once
    assert revoked.status_code == 401
    assert revoked.json()["error"]["code"] == "token_revoked"

    token = accounts_gateway.sign_in(person.username, person.password)  # within the second
    with accounts_gateway.client(token) as client:
        assert client.get("/auth/me").json()["teams"] == []
        # Joining a team revokes nothing (the token lacks it until the next sign-in).
        accounts_admin.put(f"/teams/revoking-team/members/{person.username}")
        assert client.get("/auth/me").status_code == 200
        change = {"password": "a-new-password", "current_password": person.password}
        assert client.put(f"/users/{person.username}/password", json=change).status_code == 204
        assert client.get("/auth/me").json()["error"]["code"] == "token_revoked"
    token = accounts_gateway.sign_in(person.username, "a-new-password")
    with accounts_gateway.client(token) as client:
        assert client.get("/auth/me").json()["teams"] == ["revoking-team"]


def test_users_teams_and_keys_come_by_page_with_their_total(
    accounts_admin: httpx.Client, new_person: NewPerson
) -> None:
    for name in ("page-a", "page-b", "page-c"):
        assert accounts_admin.post("/teams", json={"name": name}).status_code == 201
    person = new_person()
    for name in ("k1", "k2", "k3"):
        assert person.client.post("/auth/keys", json={"name": name}).status_code == 201

    everyone = accounts_admin.get("/users", params={"limit": 1000})
    total = int(everyone.headers["X-Total-Count"])
    assert total == len(everyone.json()) >= 2  # the admin and this person at least
    names = [user["username"] for user in everyone.json()]
    assert names == sorted(names)
    pages = [
        accounts_admin.get("/users", params={"limit": 2, "offset": offset}).json()
        for offset in range(0, total, 2)
    ]
    assert [user["username"] for page in pages for user in page] == names
    past = accounts_admin.get("/users", params={"offset": total})
    assert (past.json(), past.headers["X-Total-Count"]) == ([], str(total))

    teams = accounts_admin.get("/teams", params={"limit": 1000}).json()
    page = accounts_admin.get("/teams", params={"limit": 2, "offset": 1})
    assert page.json() == teams[1:3]
    assert page.headers["X-Total-Count"] == str(len(teams))

    keys = person.client.get("/auth/keys", params={"limit": 2, "offset": 1})
    assert [key["name"] for key in keys.json()] == ["k2", "k3"]
    assert keys.headers["X-Total-Count"] == "3"

    for path in ("/users", "/teams"):
        for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
            assert accounts_admin.get(path, params=bad).status_code == 422, (path, bad)
    assert person.client.get("/auth/keys", params={"limit": 0}).status_code == 422
