"""Fixtures for the gateway: the real service as a process, on real PostgreSQL (and, for
servers and the proxy, the real control plane with the operator and the SmolLM2 server)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.platform import RunningService, start_service

SECRET = "gateway-tests-secret-of-at-least-32-bytes"
ADMIN_PASSWORD = "first-admin-password-for-tests"


@pytest.fixture(scope="session")
def signer() -> TokenSigner:
    """Signs tokens as the gateway does (same secret), for tests that need one directly."""
    return TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))


@pytest.fixture
def gateway_database(database_url: str) -> Iterator[str]:
    """The gateway's tables in a schema of their own, for one test."""
    schema = f"gateway_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield f"{database_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def gateway_env(gateway_database: str) -> dict[str, str]:
    """The gateway's settings for this test (override as needed)."""
    return {
        "JWT_SECRET": SECRET,
        "GATEWAY_DATABASE_URL": gateway_database,
        "GATEWAY_ADMIN_USERNAME": "admin",
        "GATEWAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }


@pytest.fixture
def start_gateway(
    gateway_env: dict[str, str], testbed_dir: Path
) -> Iterator[Callable[..., RunningService]]:
    """`start_gateway(**overrides)`: the gateway as a process, stopped after the test."""
    started: list[RunningService] = []

    def start(**overrides: str) -> RunningService:
        service = start_service("gateway", testbed_dir / "logs", {**gateway_env, **overrides})
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
