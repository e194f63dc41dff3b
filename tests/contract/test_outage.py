"""PostgreSQL briefly gone: the service answers 503 with a clear error, then recovers."""

from __future__ import annotations

from pathlib import Path

import httpx

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.platform import start_service
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import start_postgres


def test_an_outage_of_the_database_is_a_503_and_passes(tmp_path: Path, signer: TokenSigner) -> None:
    # A database of its own: stopping the session's would break the other tests.
    postgres = start_postgres(log_folder=tmp_path)
    service = None
    try:
        service = start_service(
            "contract",
            tmp_path,
            {
                "CONTRACT_DATABASE_URL": postgres.dsn(),
                "JWT_SECRET": "contract-tests-secret-of-at-least-32-bytes",
                "CONTRACT_INVENTORY_SECONDS": "0",
                "CONTRACT_DATABASE_TIMEOUT": "1",
            },
        )
        headers = {"Authorization": f"Bearer {signer.sign('alice')}"}
        body = {"action": "infer", "resource": {"model": "m"}, "dry_run": True}

        def decide() -> httpx.Response:
            return httpx.post(f"{service.url}/decide", json=body, headers=headers, timeout=30)

        assert decide().json()["allowed"]
        postgres.pause()
        down = decide()
        assert down.status_code == 503
        assert down.headers["retry-after"] == "1"
        error = down.json()["error"]
        assert error["code"] == "policy_store_unavailable"
        assert "database" in error["message"]
        assert str(postgres.port) not in down.text  # where the database is: not answered
        assert service.process.running()  # it does not crash; it waits for the database
        postgres.resume()

        # The pool replaces the connections it lost; no restart of the service.
        def answered() -> httpx.Response | None:
            response = decide()
            return response if response.status_code == 200 else None

        recovered = wait_for(answered, timeout=30, what="a decision")
        assert recovered.json()["allowed"]
    finally:
        if service is not None:
            service.stop()
        postgres.stop()
