"""Fixtures for the jobs engine: its tables in a schema of their own on the test bed's
real PostgreSQL, and the service as a real process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from modelserve.common.database import open_pool
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.jobs.schema import create_schema
from modelserve.jobs.store import JobStore
from modelserve.testbed.platform import RunningService
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.testing_services import service_starter

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
    """`async with open_store(url) as store`: a JobStore, its tables made where missing."""
    return opened_store


@contextlib.asynccontextmanager
async def opened_store(url: str) -> AsyncIterator[JobStore]:
    """A JobStore on `url`, its tables made where missing."""
    await asyncio.to_thread(create_schema, url)
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
