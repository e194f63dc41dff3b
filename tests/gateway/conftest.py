"""Fixtures for the gateway: the real service as a process, on real PostgreSQL (and, for
servers and the proxy, the real control plane with the operator and the SmolLM2 server)."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from pydantic import SecretStr

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import (
    RunningContract,
    RunningService,
    gateway_kubeconfig,
    start_service,
)
from modelserve.testbed.platform import start_contract as start_contract_service
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import create_schema, drop_schema, fresh_schema, schema_url
from modelserve.testbed.testing_clients import token_clients
from modelserve.testbed.testing_services import service_on_fresh_schema, service_starter

SECRET = "gateway-tests-secret-of-at-least-32-bytes"
ADMIN_PASSWORD = "first-admin-password-for-tests"


@pytest.fixture(scope="session")
def signer() -> TokenSigner:
    """Signs tokens as the gateway does (same secret), for tests that need one directly."""
    return TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))


@pytest.fixture
def as_user(signer: TokenSigner) -> Iterator[Callable[..., httpx.Client]]:
    """`as_user(service, subject, roles=…, teams=…)`: a client of `service` with that token."""
    with token_clients(signer) as make:

        def client(
            service: RunningService,
            subject: str,
            roles: tuple[str, ...] = (),
            teams: tuple[str, ...] = (),
        ) -> httpx.Client:
            return make(service.url, subject, roles, teams)

        yield client


def _gateway_settings(database: str) -> dict[str, str]:
    """The gateway's settings on `database`, with its first admin `admin`."""
    return {
        "JWT_SECRET": SECRET,
        "GATEWAY_DATABASE_URL": database,
        "GATEWAY_ADMIN_USERNAME": "admin",
        "GATEWAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }


@pytest.fixture
def gateway_database(database_url: str) -> Iterator[str]:
    """The gateway's tables in a schema of their own, for one test."""
    with fresh_schema(database_url, "gateway") as schema:
        yield schema_url(database_url, schema)


@pytest.fixture
def gateway_env(gateway_database: str) -> dict[str, str]:
    """The gateway's settings for this test (override as needed)."""
    return _gateway_settings(gateway_database)


@pytest.fixture
def start_gateway(
    gateway_env: dict[str, str], testbed_dir: Path
) -> Iterator[Callable[..., RunningService]]:
    """`start_gateway(**overrides)`: the gateway as a process, stopped after the test."""
    with service_starter("gateway", testbed_dir / "logs", gateway_env) as start:
        yield start


# --- Model records: the real download service, with two small models copied ----------


@dataclasses.dataclass(frozen=True)
class ModelStore:
    """A download service that holds two ready models: a GGUF file and a safetensors folder."""

    url: str
    gguf: dict[str, Any]
    folder: dict[str, Any]


@pytest.fixture(scope="session")
def model_store(
    database_url: str,
    upstream_store: MinioServer,
    platform_store: MinioServer,
    testbed_dir: Path,
    signer: TokenSigner,
) -> Iterator[ModelStore]:
    """The download service (tokens of the gateway tests' secret), once per session, with
    `Tiny-Chat` (one .gguf file) and `Tiny-ST` (a safetensors folder) downloaded through it
    from the upstream store."""
    upstream, platform = f"gw-up-{uuid.uuid4().hex[:8]}", f"gw-pf-{uuid.uuid4().hex[:8]}"
    upstream_store.client().make_bucket(upstream)
    platform_store.client().make_bucket(platform)
    upstream_store.put(upstream, "tiny/Tiny-Chat.Q4_0.gguf", b"GGUF" + bytes(4096))
    upstream_store.put(upstream, "tiny-st/model.safetensors", bytes(2048))
    upstream_store.put(upstream, "tiny-st/config.json", b'{"architectures": ["LlamaForCausalLM"]}')
    settings = {
        "JWT_SECRET": SECRET,
        "DOWNLOAD_UPSTREAM_ENDPOINT": upstream_store.endpoint,
        "DOWNLOAD_UPSTREAM_ACCESS_KEY": upstream_store.access_key,
        "DOWNLOAD_UPSTREAM_SECRET_KEY": upstream_store.secret_key,
        "DOWNLOAD_UPSTREAM_BUCKETS": upstream,
        "DOWNLOAD_PLATFORM_ENDPOINT": platform_store.endpoint,
        "DOWNLOAD_PLATFORM_ACCESS_KEY": platform_store.access_key,
        "DOWNLOAD_PLATFORM_SECRET_KEY": platform_store.secret_key,
        "DOWNLOAD_PLATFORM_BUCKET": platform,
        "DOWNLOAD_WORKER_ID": f"worker-{uuid.uuid4().hex[:6]}",
        "DOWNLOAD_POLL_SECONDS": "1",
    }
    token = signer.sign("root", roles=("admin",))
    logs = testbed_dir / "logs"
    with service_on_fresh_schema(
        "download", database_url, logs, settings, prefix="gateway_download"
    ) as service:
        with httpx.Client(
            base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as admin:
            for source in (
                {"key": "tiny/Tiny-Chat.Q4_0.gguf", "name": "Tiny-Chat", "model_id": "tiny-chat"},
                {"prefix": "tiny-st/", "name": "Tiny-ST", "model_id": "tiny-st"},
            ):
                started = admin.post("/downloads", json=source)
                assert started.status_code == 202, started.text

            def ready() -> dict[str, Any] | None:
                records = {record["id"]: record for record in admin.get("/models").json()}
                return records if len(records) == 2 else None

            records = wait_for(ready, timeout=60, what="the two test models to be downloaded")
        yield ModelStore(service.url, records["tiny-chat"], records["tiny-st"])


@pytest.fixture(scope="module")
def module_contract(
    database_url: str, testbed_dir: Path, request: pytest.FixtureRequest
) -> Iterator[RunningService]:
    """A contract service for one test module (no webhook, no inventory), on a schema named
    after the module, trusting the gateway tests' tokens."""
    prefix = request.module.__name__.rpartition(".")[2].removeprefix("test_") + "_contract"
    settings = {"JWT_SECRET": SECRET, "CONTRACT_INVENTORY_SECONDS": "0"}
    with service_on_fresh_schema(
        "contract", database_url, testbed_dir / "logs", settings, prefix=prefix
    ) as service:
        yield service


@pytest.fixture
def contract_service(database_url: str, testbed_dir: Path) -> Iterator[RunningService]:
    """A contract service (no webhook) on its own schema, trusting the gateway tests' tokens."""
    settings = {
        "JWT_SECRET": SECRET,
        "CONTRACT_INVENTORY_SECONDS": "0",
        "CONTRACT_DEFAULT_NAMESPACES": "*",
    }
    with service_on_fresh_schema(
        "contract", database_url, testbed_dir / "logs", settings, prefix="gateway_contract"
    ) as service:
        yield service


@pytest.fixture
def contract_with_database(
    database_url: str, testbed_dir: Path
) -> Iterator[Callable[..., tuple[RunningService, str]]]:
    """`contract_with_database(**overrides)`: a contract service as `contract_service`, with
    more settings, and the URL of its schema (to read its counters); stopped afterwards."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: str) -> tuple[RunningService, str]:
            schema = stack.enter_context(fresh_schema(database_url, "gateway_contract"))
            database = schema_url(database_url, schema)
            settings = {
                "CONTRACT_DATABASE_URL": database,
                "JWT_SECRET": SECRET,
                "CONTRACT_INVENTORY_SECONDS": "0",
                "CONTRACT_DEFAULT_NAMESPACES": "*",
                **overrides,
            }
            service = start_service("contract", testbed_dir / "logs", settings)
            stack.callback(service.stop)
            return service, database

        yield start


# --- Accounts: one gateway per test module, people made through its API -----------------


@dataclasses.dataclass(frozen=True)
class AccountsGateway:
    url: str
    database: str
    """Its database URL, the search path set to its own schema."""
    admin_password: str
    """Of its first admin, `admin`."""
    secret: str
    """JWT_SECRET."""

    def sign_in(self, username: str, password: str) -> str:
        answer = httpx.post(
            f"{self.url}/auth/token", json={"username": username, "password": password}
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def client(self, token: str) -> httpx.Client:
        """A client that sends `token` (a JWT or an API key); the caller closes it."""
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@dataclasses.dataclass(frozen=True)
class Person:
    username: str
    password: str
    client: httpx.Client
    """Sends this person's token."""


@pytest.fixture(scope="module")
def accounts_gateway(database_url: str, testbed_dir: Path) -> Iterator[AccountsGateway]:
    """A gateway with its first admin, shared by a test module."""
    with fresh_schema(database_url, "gateway_accounts") as schema:
        database = schema_url(database_url, schema)
        service = start_service("gateway", testbed_dir / "logs", _gateway_settings(database))
        try:
            yield AccountsGateway(service.url, database, ADMIN_PASSWORD, SECRET)
        finally:
            service.stop()


@pytest.fixture(scope="module")
def accounts_admin(accounts_gateway: AccountsGateway) -> Iterator[httpx.Client]:
    """A client with the first admin's token."""
    token = accounts_gateway.sign_in("admin", ADMIN_PASSWORD)
    with accounts_gateway.client(token) as client:
        yield client


@pytest.fixture
def new_person(
    accounts_gateway: AccountsGateway, accounts_admin: httpx.Client
) -> Iterator[Callable[..., Person]]:
    """`new_person(role="user", teams=())`: a user made by the admin, signed in."""
    clients: list[httpx.Client] = []

    def make(role: str = "user", teams: tuple[str, ...] = ()) -> Person:
        username, password = f"u-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
        body = {"username": username, "password": password, "role": role, "teams": list(teams)}
        created = accounts_admin.post("/users", json=body)
        assert created.status_code == 201, created.text
        client = accounts_gateway.client(accounts_gateway.sign_in(username, password))
        clients.append(client)
        return Person(username, password, client)

    yield make
    for client in clients:
        client.close()


# --- The cluster, as the gateway sees it -------------------------------------------------


@pytest.fixture(scope="module")
def cluster_namespace(kube_api: k8s.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace shared by a test module, named after it (`proxy-…` for test_proxy.py)."""
    prefix = request.module.__name__.rpartition(".")[2].removeprefix("test_").replace("_", "-")
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def gateway_kube(crds: KubeCluster) -> str:
    """Credentials of the gateway's own service account (services/gateway/deploy/rbac.yaml),
    so that every test that talks to the cluster also checks those permissions."""
    return str(gateway_kubeconfig(crds))


@pytest.fixture
def contract_with_webhook(
    crds: KubeCluster,
    namespace: str,
    database_url: str,
    testbed_dir: Path,
    model_store: ModelStore,
) -> Iterator[RunningContract]:
    """The contract service with its admission webhook, for this test's namespace only,
    letting the gateway's Kubernetes user act for the owners it labels; models come from
    the tests' platform bucket."""
    uri = model_store.gguf["uri"]
    prefix = uri[: uri.index("/models/") + len("/models/")]
    schema = create_schema(database_url, "gateway_webhook")
    contract = start_contract_service(
        crds,
        testbed_dir,
        schema_url(database_url, schema),
        {
            "JWT_SECRET": "gateway-tests-secret-of-at-least-32-bytes",
            "CONTRACT_INVENTORY_SECONDS": "0",
            "CONTRACT_DEFAULT_NAMESPACES": "*",
            "CONTRACT_MODEL_PREFIX": prefix,
        },
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        name=f"gateway-tests-{namespace}",
    )
    yield contract
    contract.stop(crds)
    drop_schema(database_url, schema)
