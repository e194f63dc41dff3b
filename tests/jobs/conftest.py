"""Fixtures for the jobs engine: its tables in a schema of their own on the test bed's
real PostgreSQL, the service as a real process, and the whole path (`job_platform`):
gateway, contract and jobs services with SmolLM2."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from pydantic import SecretStr

from modelserve.common.database import open_pool
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.jobs import migrations
from modelserve.jobs.store import JobStore
from modelserve.testbed.job_platform import JobPlatform
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import LlmServer
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import (
    RunningOperator,
    RunningService,
    build_external_server,
    gateway_kubeconfig,
    serve_external,
    start_service,
)
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.processes import free_port
from modelserve.testbed.testing_services import service_on_fresh_schema, service_starter

SECRET = "jobs-tests-secret-of-at-least-32-bytes-long"


@pytest.fixture(scope="session")
def jobs_signer() -> TokenSigner:
    return TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))


@pytest.fixture
def jobs_database(database_url: str) -> Iterator[str]:
    """The engine's tables' schema, for one test (the tables made when first opened)."""
    with fresh_schema(database_url, "jobs") as schema:
        yield schema_url(database_url, schema)


@pytest.fixture(scope="session")
def jobs_tokens() -> TokenSettings:
    """The token settings of the services and workers these tests start."""
    return TokenSettings(secret=SecretStr(SECRET))


@pytest.fixture(scope="session")
def open_store() -> Callable[[str], contextlib.AbstractAsyncContextManager[JobStore]]:
    """`async with open_store(url) as store`: a JobStore, its schema migrated."""
    return opened_store


@contextlib.asynccontextmanager
async def opened_store(url: str) -> AsyncIterator[JobStore]:
    """A JobStore on `url`, its schema migrated to the newest revision."""
    await asyncio.to_thread(migrations.upgrade, url)
    pool = await open_pool(url, size=4, wait=5.0)
    try:
        yield JobStore(pool)
    finally:
        await pool.close()


@pytest.fixture
def start_jobs(jobs_database: str, testbed_dir: Path) -> Iterator[Callable[..., RunningService]]:
    """`start_jobs(**overrides)`: the jobs service as a process, stopped after the test."""
    settings = {
        "JWT_SECRET": SECRET,
        "JOBS_DATABASE_URL": jobs_database,
        "JOBS_POLL_SECONDS": "0.2",
        "JOBS_RENEW_SECONDS": "0.5",
    }
    with service_starter("jobs", testbed_dir / "logs", settings) as start:
        yield start


# --- The whole path: gateway, contract, jobs service, a real SmolLM2 ---------------------


@pytest.fixture(scope="module")
def job_platform(
    crds: KubeCluster,
    operator: RunningOperator,
    kube_api: k8s.ApiClient,
    llm: LlmServer,
    database_url: str,
    platform_store: MinioServer,
    jobs_signer: TokenSigner,
    testbed_dir: Path,
    request: pytest.FixtureRequest,
) -> Iterator[JobPlatform]:
    prefix = request.module.__name__.rpartition(".")[2].removeprefix("test_").replace("_", "-")
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    bucket = f"jobs-{uuid.uuid4().hex[:8]}"
    platform_store.client().make_bucket(bucket)
    logs = testbed_dir / "logs"
    try:
        serve_external(
            crds,
            build_external_server(
                "smollm2", namespace, owner="root", served_name=llm.alias, url=llm.url
            ),
        )
        with contextlib.ExitStack() as stack:
            contract = stack.enter_context(
                service_on_fresh_schema(
                    "contract",
                    database_url,
                    logs,
                    {"JWT_SECRET": SECRET, "CONTRACT_INVENTORY_SECONDS": "0"},
                    prefix="jobs_contract",
                )
            )
            jobs_schema = stack.enter_context(fresh_schema(database_url, "jobs_platform"))
            gateway_schema = stack.enter_context(fresh_schema(database_url, "jobs_gateway"))
            jobs_port, gateway_port = free_port(), free_port()
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            admin_password = "jobs-platform-admin-password"
            gateway = start_service(
                "gateway",
                logs,
                {
                    "JWT_SECRET": SECRET,
                    "GATEWAY_DATABASE_URL": schema_url(database_url, gateway_schema),
                    "GATEWAY_ADMIN_USERNAME": "admin",
                    "GATEWAY_ADMIN_PASSWORD": admin_password,
                    "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
                    "GATEWAY_PLATFORM_NAMESPACES": namespace,
                    "GATEWAY_CONTRACT_URL": contract.url,
                    "GATEWAY_JOBS_URL": f"http://127.0.0.1:{jobs_port}",
                    "GATEWAY_USAGE_FLUSH_SECONDS": "0.2",
                    "GATEWAY_USAGE_RETRY_SECONDS": "0.2",
                },
                port=gateway_port,
            )
            stack.callback(gateway.stop)
            jobs_database = schema_url(database_url, jobs_schema)
            jobs = start_service(
                "jobs",
                logs,
                {
                    "JWT_SECRET": SECRET,
                    "JWT_GATEWAY_URL": gateway_url,
                    "JOBS_DATABASE_URL": jobs_database,
                    "JOBS_GATEWAY_URL": gateway_url,
                    "JOBS_STORE_ENDPOINT": platform_store.endpoint,
                    "JOBS_STORE_ACCESS_KEY": platform_store.access_key,
                    "JOBS_STORE_SECRET_KEY": platform_store.secret_key,
                    "JOBS_STORE_BUCKET": bucket,
                    "JOBS_POLL_SECONDS": "0.2",
                    "JOBS_RENEW_SECONDS": "0.5",
                    "JOBS_RETRY_SECONDS": "0.5",
                },
                port=jobs_port,
            )
            stack.callback(jobs.stop)
            yield JobPlatform(
                gateway,
                contract,
                jobs,
                jobs_database,
                bucket,
                platform_store,
                llm.alias,
                jobs_signer,
                admin_password,
            )
    finally:
        core.delete_namespace(namespace)
