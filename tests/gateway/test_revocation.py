"""Every service takes every platform token, and none keeps taking one that was cut off:
the gateway, the contract service and the download service as processes, on real
PostgreSQL (and MinIO for the download service).

The contract and download services learn API keys and revocations from the gateway
(JWT_GATEWAY_URL): a key works everywhere; disabling a user, demoting an admin or revoking
a key takes effect everywhere within JWT_REVOCATION_SECONDS (waited for here, not timed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import start_service
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.testing_clients import metric
from modelserve.testbed.testing_services import service_on_fresh_schema

if TYPE_CHECKING:  # fixtures' types: conftest modules are pytest's to import
    from tests.gateway.conftest import AccountsGateway, Person

pytestmark = pytest.mark.postgres

NewPerson = Callable[..., "Person"]
ADMIN_PASSWORD = "rs256-admin-password"
# Where each service answers any valid token, and where only admins are let through.
CONTRACT_ANYONE, CONTRACT_ADMIN = "/contracts/me", "/contracts"
DOWNLOAD_ANYONE = "/downloads"
GATEWAY_ANYONE, GATEWAY_ADMIN = "/auth/me", "/users"


@dataclasses.dataclass(frozen=True)
class Services:
    gateway: str
    contract: str
    download: str

    def answers(self, token: str) -> dict[str, int]:
        """The status each service gives `token` on a route open to any valid token."""
        headers = {"Authorization": f"Bearer {token}"}
        return {
            name: httpx.get(f"{url}{path}", headers=headers, timeout=30).status_code
            for name, url, path in (
                ("gateway", self.gateway, GATEWAY_ANYONE),
                ("contract", self.contract, CONTRACT_ANYONE),
                ("download", self.download, DOWNLOAD_ANYONE),
            )
        }

    def refused_everywhere(self, token: str) -> bool:
        return set(self.answers(token).values()) == {401}


def _download_settings(upstream: MinioServer, platform: MinioServer) -> dict[str, str]:
    return {
        "DOWNLOAD_UPSTREAM_ENDPOINT": upstream.endpoint,
        "DOWNLOAD_UPSTREAM_ACCESS_KEY": upstream.access_key,
        "DOWNLOAD_UPSTREAM_SECRET_KEY": upstream.secret_key,
        "DOWNLOAD_UPSTREAM_BUCKETS": upstream.bucket,
        "DOWNLOAD_PLATFORM_ENDPOINT": platform.endpoint,
        "DOWNLOAD_PLATFORM_ACCESS_KEY": platform.access_key,
        "DOWNLOAD_PLATFORM_SECRET_KEY": platform.secret_key,
        "DOWNLOAD_PLATFORM_BUCKET": platform.bucket,
        "DOWNLOAD_WORKER_ID": f"worker-{uuid.uuid4().hex[:6]}",
    }


@pytest.fixture(scope="module")
def services(
    accounts_gateway: AccountsGateway,
    database_url: str,
    upstream_store: MinioServer,
    platform_store: MinioServer,
    testbed_dir: Path,
) -> Iterator[Services]:
    """The module's gateway, and a contract and a download service that ask it about API
    keys and revocations (JWT_GATEWAY_URL)."""
    tokens = {"JWT_SECRET": accounts_gateway.secret, "JWT_GATEWAY_URL": accounts_gateway.url}
    logs = testbed_dir / "logs"
    contract_settings = {**tokens, "CONTRACT_INVENTORY_SECONDS": "0"}
    download_settings = {**tokens, **_download_settings(upstream_store, platform_store)}
    with (
        service_on_fresh_schema(
            "contract", database_url, logs, contract_settings, prefix="revocation_contract"
        ) as contract,
        service_on_fresh_schema(
            "download", database_url, logs, download_settings, prefix="revocation_download"
        ) as download,
    ):
        yield Services(accounts_gateway.url, contract.url, download.url)


def _status(url: str, path: str, token: str) -> int:
    answer = httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return answer.status_code


def _error_code(url: str, path: str, token: str) -> str:
    answer = httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    code: str = answer.json()["error"]["code"]
    return code


def _key(person: Person) -> dict[str, str]:
    created = person.client.post("/auth/keys", json={"name": "program"})
    assert created.status_code == 201, created.text
    key: dict[str, str] = created.json()
    return key


def test_an_api_key_works_at_every_service(services: Services, new_person: NewPerson) -> None:
    key = _key(new_person())["key"]
    assert services.answers(key) == {"gateway": 200, "contract": 200, "download": 200}


def test_a_forged_key_is_refused_at_every_service(
    services: Services, new_person: NewPerson
) -> None:
    key = _key(new_person())["key"]
    forged = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    for name, url, path in (
        ("contract", services.contract, CONTRACT_ANYONE),
        ("download", services.download, DOWNLOAD_ANYONE),
    ):
        assert _status(url, path, forged) == 401, name
        assert _error_code(url, path, forged) == "token_invalid", name


def test_a_disabled_users_token_and_key_stop_working_everywhere(
    services: Services, accounts_admin: httpx.Client, new_person: NewPerson
) -> None:
    person = new_person()
    token = person.client.headers["Authorization"].removeprefix("Bearer ")
    key = _key(person)["key"]
    assert services.answers(token) == {"gateway": 200, "contract": 200, "download": 200}
    disabled = accounts_admin.patch(f"/users/{person.username}", json={"disabled": True})
    assert disabled.status_code == 200, disabled.text
    for credential in (token, key):
        wait_for(
            lambda credential=credential: services.refused_everywhere(credential),  # type: ignore[misc]
            timeout=20,
            what="every service to refuse the disabled user",
        )
    assert _error_code(services.contract, CONTRACT_ANYONE, token) == "token_revoked"
    assert _error_code(services.download, DOWNLOAD_ANYONE, token) == "token_revoked"


def test_a_demoted_admin_loses_admin_rights_everywhere(
    services: Services,
    accounts_gateway: AccountsGateway,
    accounts_admin: httpx.Client,
    new_person: NewPerson,
) -> None:
    person = new_person(role="admin")
    token = person.client.headers["Authorization"].removeprefix("Bearer ")
    assert _status(services.contract, CONTRACT_ADMIN, token) == 200
    assert _status(services.gateway, GATEWAY_ADMIN, token) == 200
    demoted = accounts_admin.patch(f"/users/{person.username}", json={"role": "user"})
    assert demoted.status_code == 200, demoted.text

    def admin_nowhere() -> bool:
        return {
            _status(services.contract, CONTRACT_ADMIN, token),
            _status(services.gateway, GATEWAY_ADMIN, token),
        } == {401}

    wait_for(admin_nowhere, timeout=20, what="the demoted admin's token to be refused")
    # Signing in again right away gives a token with the new role, accepted everywhere.
    fresh = accounts_gateway.sign_in(person.username, person.password)
    assert services.answers(fresh) == {"gateway": 200, "contract": 200, "download": 200}
    assert _status(services.contract, CONTRACT_ADMIN, fresh) == 403


def test_a_revoked_key_stops_working_everywhere(services: Services, new_person: NewPerson) -> None:
    person = new_person()
    key = _key(person)
    assert services.answers(key["key"]) == {"gateway": 200, "contract": 200, "download": 200}
    assert person.client.delete(f"/auth/keys/{key['id']}").status_code == 204
    wait_for(
        lambda: services.refused_everywhere(key["key"]),
        timeout=20,
        what="every service to refuse the revoked key",
    )


def test_the_revocation_list_names_nobody_in_clear(
    services: Services, accounts_admin: httpx.Client, new_person: NewPerson
) -> None:
    person = new_person()
    key = _key(person)
    accounts_admin.patch(f"/users/{person.username}", json={"disabled": True})
    answer = httpx.get(f"{services.gateway}/auth/revocations")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # Users by the SHA-256 of their name; a disabled user's keys die with them.
    assert person.username not in answer.text
    assert hashlib.sha256(person.username.encode()).hexdigest() in body["users"]
    assert key["id"] not in body["keys"]
    assert accounts_admin.delete(f"/auth/keys/{key['id']}").status_code == 204
    assert httpx.get(f"{services.gateway}/auth/revocations").json()["keys"].count(key["id"]) == 1

    answer = httpx.get(f"{services.gateway}/auth/revocations")
    assert answer.headers["etag"] == f'"{answer.json()["version"]}"'
    etag = {"If-None-Match": answer.headers["etag"]}
    assert httpx.get(f"{services.gateway}/auth/revocations", headers=etag).status_code == 304


def test_asking_for_the_revocation_list_costs_no_query_each_time(services: Services) -> None:
    """Anyone may ask for the list, without a token: it is the one the gateway checks
    tokens against, read from the database at most every JWT_REVOCATION_SECONDS (2 s
    here), not once per request (a flood of requests cannot starve that read)."""
    name = "modelserve_gateway_revocation_queries_total"
    before = metric(services.gateway, name)
    started = time.monotonic()
    with httpx.Client(base_url=services.gateway) as http:
        for _ in range(200):
            assert http.get("/auth/revocations").status_code == 200
    elapsed = time.monotonic() - started
    queries = metric(services.gateway, name) - before
    assert queries <= elapsed / 2.0 + 2, (queries, elapsed)


# --- RS256: only the gateway holds the private key -----------------------------------


@pytest.fixture(scope="module")
def rs256_services(
    database_url: str,
    upstream_store: MinioServer,
    platform_store: MinioServer,
    testbed_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Services]:
    """A gateway signing with RS256, and a contract and a download service that have only
    its JWKS URL: no secret, no private key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path_factory.mktemp("rs256") / "gateway.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    logs = testbed_dir / "logs"
    with fresh_schema(database_url, "rs256_gateway") as schema:
        gateway = start_service(
            "gateway",
            logs,
            {
                "JWT_ALGORITHM": "RS256",
                "JWT_PRIVATE_KEY_FILE": str(key_file),
                "GATEWAY_DATABASE_URL": schema_url(database_url, schema),
                "GATEWAY_ADMIN_USERNAME": "admin",
                "GATEWAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
            },
        )
        try:
            verifying = {
                "JWT_ALGORITHM": "RS256",
                "JWT_JWKS_URL": f"{gateway.url}/.well-known/jwks.json",
                "JWT_GATEWAY_URL": gateway.url,
            }
            contract_settings = {**verifying, "CONTRACT_INVENTORY_SECONDS": "0"}
            download_settings = {**verifying, **_download_settings(upstream_store, platform_store)}
            with (
                service_on_fresh_schema(
                    "contract", database_url, logs, contract_settings, prefix="rs256_contract"
                ) as contract,
                service_on_fresh_schema(
                    "download", database_url, logs, download_settings, prefix="rs256_download"
                ) as download,
            ):
                yield Services(gateway.url, contract.url, download.url)
        finally:
            gateway.stop()


def test_rs256_tokens_and_keys_of_the_gateway_work_everywhere(rs256_services: Services) -> None:
    answer = httpx.post(
        f"{rs256_services.gateway}/auth/token",
        json={"username": "admin", "password": ADMIN_PASSWORD},
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert services_answer_ok(rs256_services, token)
    key = httpx.post(
        f"{rs256_services.gateway}/auth/keys",
        json={"name": "rs256"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()["key"]
    assert services_answer_ok(rs256_services, key)


def services_answer_ok(services: Services, token: str) -> bool:
    return services.answers(token) == {"gateway": 200, "contract": 200, "download": 200}


def test_an_unknown_key_at_the_contract_is_asked_about_once(services: Services) -> None:
    unknown = f"msk_{uuid.uuid4().hex[:12]}_{'b' * 43}"
    before = metric(services.gateway, "modelserve_gateway_api_key_queries_total")
    for _ in range(30):
        assert _status(services.contract, CONTRACT_ANYONE, unknown) == 401
    assert metric(services.gateway, "modelserve_gateway_api_key_queries_total") - before <= 1


def test_another_gateway_replica_refuses_within_seconds(
    accounts_gateway: AccountsGateway,
    accounts_admin: httpx.Client,
    new_person: NewPerson,
    testbed_dir: Path,
) -> None:
    """Two replicas on one database: a user disabled through the first is refused by the
    second, which learns it from the database, not from the first."""
    replica = start_service(
        "gateway",
        testbed_dir / "logs",
        {
            "JWT_SECRET": accounts_gateway.secret,
            "GATEWAY_DATABASE_URL": accounts_gateway.database,
            "GATEWAY_ADMIN_USERNAME": "admin",
            "GATEWAY_ADMIN_PASSWORD": accounts_gateway.admin_password,
        },
    )
    try:
        person = new_person()
        token = person.client.headers["Authorization"].removeprefix("Bearer ")
        key = _key(person)["key"]
        for credential in (token, key):
            assert _status(replica.url, GATEWAY_ANYONE, credential) == 200
        disabled = accounts_admin.patch(f"/users/{person.username}", json={"disabled": True})
        assert disabled.status_code == 200, disabled.text

        def refused() -> bool:
            return {_status(replica.url, GATEWAY_ANYONE, c) for c in (token, key)} == {401}

        wait_for(refused, timeout=20, what="the other replica to refuse the disabled user")
    finally:
        replica.stop()
