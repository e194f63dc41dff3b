"""Each service's console script starts a real server that answers GET /health."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import ManagedProcess, free_port


@pytest.mark.parametrize("service", ["gateway", "contract", "download"])
def test_service_answers_health(
    service: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Console scripts sit beside the interpreter of the environment they are installed in.
    script = Path(sys.executable).parent / f"modelserve-{service}"
    assert script.exists(), f"{script} is not installed"
    port = free_port()
    env = {f"{service.upper()}_PORT": str(port), "MODELSERVE_DEVELOPMENT": "true"}
    # Each keeps its tables in PostgreSQL from the start.
    if service == "contract":
        env |= {
            "CONTRACT_DATABASE_URL": request.getfixturevalue("database_url"),
            "CONTRACT_INVENTORY_SECONDS": "0",
        }
    if service in ("download", "gateway"):
        env[f"{service.upper()}_DATABASE_URL"] = request.getfixturevalue("database_url")
    process = ManagedProcess(service, [script], tmp_path / f"{service}.log", env=env)
    process.start()
    try:

        def healthy() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            except httpx.TransportError:
                return None

        response = wait_for(healthy, timeout=30, what=f"{service} to serve /health")
        assert response.status_code == 200
        expected: dict[str, object] = {"status": "ok", "service": service, "version": "0.2.0"}
        if service == "gateway":  # and which models are loaded (none here: no cluster)
            expected |= {
                "loaded_models": [],
                "available_models": [],
                "models": [],
                # Seed 003's fields: nothing served, nothing busy, and no GPU known.
                "active_model": None,
                "active_models": [],
                "worker_busy": False,
                "busy": False,
                "gpu": {
                    "available": None,
                    "device_count": None,
                    "device_name": None,
                    "device_names": [],
                    "memory_allocated_gb": None,
                    "memory_reserved_gb": None,
                    "memory_total_gb": None,
                    "live_gpus": 0,
                    "unavailable": "this gateway is not connected to a cluster",
                },
            }
        assert response.json() == expected
    finally:
        process.stop()
