"""Fixtures for the contract service: the real service, on real PostgreSQL, as processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.platform import RunningService, start_service

SECRET = "contract-tests-secret-of-at-least-32-bytes"


@pytest.fixture(scope="session")
def signer() -> TokenSigner:
    return TokenSigner.from_settings(TokenSettings(secret=SECRET))


@pytest.fixture(scope="session")
def contract_database(database_url: str) -> str:
    """The contract service's tables in a schema of their own."""
    schema = f"contract_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return f"{database_url}?options=-csearch_path%3D{schema}"


def contract_settings(database: str, **more: str) -> dict[str, str]:
    return {
        "CONTRACT_DATABASE_URL": database,
        "JWT_SECRET": SECRET,
        "CONTRACT_INVENTORY_SECONDS": "0",
        **more,
    }


@pytest.fixture(scope="session")
def contract(contract_database: str, testbed_dir: Path) -> Iterator[RunningService]:
    """One contract service for the tests that need no cluster."""
    service = start_service("contract", testbed_dir / "logs", contract_settings(contract_database))
    yield service
    service.stop()


@pytest.fixture
def client(contract: RunningService, signer: TokenSigner) -> Iterator[Callable[..., httpx.Client]]:
    """`client(subject, roles=…, teams=…)`: an HTTP client with that person's token."""
    clients: list[httpx.Client] = []

    def make(subject: str, roles: tuple[str, ...] = (), teams: tuple[str, ...] = ()) -> httpx.Client:
        token = signer.sign(subject, roles=roles, teams=teams)
        made = httpx.Client(
            base_url=contract.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        clients.append(made)
        return made

    yield make
    for made in clients:
        made.close()


@pytest.fixture
def user() -> str:
    """A user name no other test uses: contracts and counters are per user."""
    return f"u-{uuid.uuid4().hex[:8]}"
