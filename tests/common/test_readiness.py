"""GET /ready against real processes: each service's checks pass when what it needs
answers, and fail by name, with the reason, when it does not, while /health (liveness)
stays 200."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningService, gateway_kubeconfig, start_service
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import PostgresServer, fresh_schema, schema_url, start_postgres
from modelserve.testbed.processes import free_port
from modelserve.testbed.request_path import RequestPath, wait_routed

SECRET = "readiness-tests-secret-of-at-least-32-bytes"


def ready(service: RunningService) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(f"{service.url}/ready", timeout=10)
    return answer.status_code, answer.json()


def unready(service: RunningService) -> tuple[int, dict[str, Any]] | None:
    """The answer of /ready when it is 503, else None (to wait for it)."""
    found = ready(service)
    return found if found[0] == 503 else None


def failing(body: dict[str, Any]) -> dict[str, str]:
    return {name: check["detail"] for name, check in body["checks"].items() if not check["ok"]}


@pytest.fixture
def start(database_url: str, testbed_dir: Path) -> Iterator[Any]:
    """`start(name, **settings)`: a service on a fresh schema, stopped after the test."""
    with fresh_schema(database_url, "readiness") as schema:
        started: list[RunningService] = []

        def run(name: str, **settings: str) -> RunningService:
            database = {f"{name.upper()}_DATABASE_URL": schema_url(database_url, schema)}
            env = {"JWT_SECRET": SECRET, **database, **settings}
            started.append(start_service(name, testbed_dir / "logs", env))
            return started[-1]

        try:
            yield run
        finally:
            for service in started:
                service.stop()


def test_a_gateway_whose_contract_service_is_down_is_alive_but_not_ready(start: Any) -> None:
    contract_port = free_port()
    gateway = start(
        "gateway",
        GATEWAY_ADMIN_USERNAME="admin",
        GATEWAY_ADMIN_PASSWORD="readiness-admin-password",
        GATEWAY_CONTRACT_URL=f"http://127.0.0.1:{contract_port}",
    )
    status, body = ready(gateway)
    assert status == 503, body
    assert body["status"] == "not_ready"
    assert set(failing(body)) == {"contract"}
    assert "cannot be reached" in failing(body)["contract"]
    # /ready answers anyone: where the peers live inside the platform is not said.
    assert str(contract_port) not in str(body) and "127.0.0.1" not in str(body)
    assert body["checks"]["database"] == {"ok": True, "detail": "ok"}
    assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200


def test_a_gateway_that_cannot_list_its_servers_is_not_ready(
    start: Any, crds: KubeCluster, tmp_path: Path
) -> None:
    """The gateway's own credentials, for an API server that is not there: discovery
    never lists, and says so."""
    config = yaml.safe_load(gateway_kubeconfig(crds).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    gateway = start(
        "gateway",
        GATEWAY_ADMIN_USERNAME="admin",
        GATEWAY_ADMIN_PASSWORD="readiness-admin-password",
        GATEWAY_KUBECONFIG=str(kubeconfig),
    )
    status, body = ready(gateway)
    assert status == 503, body
    assert set(failing(body)) == {"discovery"}
    assert failing(body)["discovery"] == "not listed yet"  # which namespaces: not said
    assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200


def test_a_jobs_service_whose_gateway_is_down_is_not_ready(start: Any) -> None:
    jobs = start("jobs", JOBS_GATEWAY_URL=f"http://127.0.0.1:{free_port()}")
    status, body = ready(jobs)
    assert status == 503, body
    assert set(failing(body)) == {"gateway"}
    assert httpx.get(f"{jobs.url}/health", timeout=10).status_code == 200


def test_the_whole_path_is_ready(request_path: RequestPath) -> None:
    """A gateway with a cluster and a contract service: database, discovery and the
    contract service checked, all passing; the contract service's own database too."""
    gateway = request_path.start_gateway()
    wait_routed(request_path, gateway)
    status, body = ready(gateway)
    assert status == 200, body
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "discovery", "contract"}
    status, body = ready(request_path.contract)
    assert (status, set(body["checks"])) == (200, {"database"}), body


def test_a_service_whose_database_stopped_is_not_ready(testbed_dir: Path) -> None:
    """A PostgreSQL server of its own, stopped under a running contract service."""
    postgres: PostgresServer = start_postgres(log_folder=testbed_dir / "logs")
    try:
        database = postgres.create_database(f"ready_{uuid.uuid4().hex[:8]}")
        contract = start_service(
            "contract",
            testbed_dir / "logs",
            {
                "JWT_SECRET": SECRET,
                "CONTRACT_DATABASE_URL": database,
                "CONTRACT_INVENTORY_SECONDS": "0",
            },
        )
        try:
            assert ready(contract)[0] == 200
            postgres.pause()
            _, body = wait_for(
                lambda: unready(contract),
                timeout=30,
                what="the contract service to say it is not ready",
            )
            assert set(failing(body)) == {"database"}, body
            assert str(postgres.port) not in str(body), body
            assert httpx.get(f"{contract.url}/health", timeout=10).status_code == 200
        finally:
            contract.stop()
    finally:
        postgres.stop()
