"""Fixtures for the download service: the real service as a process, on real PostgreSQL
and the test bed's two real MinIO stores."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.testing_clients import token_clients
from modelserve.testbed.testing_services import service_on_fresh_schema, service_starter

SECRET = "download-tests-secret-of-at-least-32-bytes"
FINISHED = ("ready", "failed", "cancelled")


@pytest.fixture(scope="session")
def signer() -> TokenSigner:
    return TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))


@pytest.fixture(scope="session")
def token_settings() -> dict[str, str]:
    """The settings that make a service trust the tokens of `signer`."""
    return {"JWT_SECRET": SECRET}


@pytest.fixture
def download_database(database_url: str) -> Iterator[str]:
    """The service's tables in a schema of their own, for one test."""
    with fresh_schema(database_url, "download") as schema:
        yield schema_url(database_url, schema)


@pytest.fixture
def download_env(
    download_database: str,
    upstream_store: MinioServer,
    upstream_bucket: str,
    platform_store: MinioServer,
    platform_bucket: str,
) -> dict[str, str]:
    """The service's settings for this test's buckets and schema (override as needed)."""
    return {
        "JWT_SECRET": SECRET,
        "DOWNLOAD_DATABASE_URL": download_database,
        "DOWNLOAD_UPSTREAM_ENDPOINT": upstream_store.endpoint,
        "DOWNLOAD_UPSTREAM_ACCESS_KEY": upstream_store.access_key,
        "DOWNLOAD_UPSTREAM_SECRET_KEY": upstream_store.secret_key,
        "DOWNLOAD_UPSTREAM_BUCKETS": upstream_bucket,
        "DOWNLOAD_PLATFORM_ENDPOINT": platform_store.endpoint,
        "DOWNLOAD_PLATFORM_ACCESS_KEY": platform_store.access_key,
        "DOWNLOAD_PLATFORM_SECRET_KEY": platform_store.secret_key,
        "DOWNLOAD_PLATFORM_BUCKET": platform_bucket,
        "DOWNLOAD_WORKER_ID": f"worker-{uuid.uuid4().hex[:6]}",
        # Small parts: a test model of a few MiB still spans several parts.
        "DOWNLOAD_PART_SIZE": str(5 << 20),
        "DOWNLOAD_PROGRESS_SECONDS": "0.2",
        "DOWNLOAD_POLL_SECONDS": "1",
    }


@pytest.fixture
def start_download(
    download_env: dict[str, str], testbed_dir: Path
) -> Iterator[Callable[..., RunningService]]:
    """`start_download(**overrides)`: the service as a process, stopped after the test."""
    with service_starter("download", testbed_dir / "logs", download_env) as start:
        yield start


@pytest.fixture
def contract_service(
    database_url: str, testbed_dir: Path, download_env: dict[str, str]
) -> Iterator[RunningService]:
    """A contract service on its own schema, trusting the same tokens."""
    settings = {"JWT_SECRET": download_env["JWT_SECRET"], "CONTRACT_INVENTORY_SECONDS": "0"}
    with service_on_fresh_schema(
        "contract", database_url, testbed_dir / "logs", settings, prefix="download_contract"
    ) as service:
        yield service


@pytest.fixture
def download(start_download: Callable[..., RunningService]) -> RunningService:
    return start_download()


@pytest.fixture
def client(download: RunningService, signer: TokenSigner) -> Iterator[Callable[..., httpx.Client]]:
    """`client(subject, roles=…)`: an HTTP client of the service with that person's token."""
    with token_clients(signer) as make:

        def as_person(subject: str = "alice", roles: tuple[str, ...] = ()) -> httpx.Client:
            return make(download.url, subject, roles)

        yield as_person


@pytest.fixture
def admin(client: Callable[..., httpx.Client]) -> httpx.Client:
    return client("root", roles=("admin",))


@pytest.fixture
def wait_finished() -> Callable[..., dict[str, Any]]:
    """`wait_finished(client, model_id)`: the download's status once it has ended."""

    def wait(client: httpx.Client, model_id: str, timeout: float = 120) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = client.get(f"/status/{model_id}").json()
            return job if job["state"] in FINISHED else None

        return wait_for(finished, timeout=timeout, what=f"the download of {model_id} to end")

    return wait
