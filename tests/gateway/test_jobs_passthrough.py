"""The gateway's door to the jobs service: the caller's token is checked first; without a
jobs service the routes say so (404 `jobs_not_configured`), and one that cannot be
reached is 503 `jobs_unavailable`, never a 500. (Passing through to a real jobs service
is tested with it, in tests/jobs/.)"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.platform import RunningService
from modelserve.testbed.processes import free_port

pytestmark = pytest.mark.postgres

PATHS = [
    ("GET", "/jobs"),
    ("GET", "/jobs/stats"),
    ("POST", "/jobs/job_x/cancel"),
    ("GET", "/v1/files"),
    ("POST", "/v1/batches"),
    ("GET", "/v1/batches/batch_x"),
    ("POST", "/eval/jobs"),
    ("GET", "/data_gen/jobs/x"),
    ("POST", "/generate"),
]


def test_without_a_jobs_service_the_routes_say_so(
    start_gateway: Callable[..., RunningService], signer: TokenSigner
) -> None:
    gateway = start_gateway()
    token = signer.sign("alice")
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for method, path in PATHS:
            anonymous = client.request(method, path)
            assert anonymous.status_code == 401, (path, anonymous.text)
            answer = client.request(method, path, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["error"]["code"] == "jobs_not_configured"


def test_a_jobs_service_out_of_reach_is_503(
    start_gateway: Callable[..., RunningService], signer: TokenSigner
) -> None:
    gateway = start_gateway(GATEWAY_JOBS_URL=f"http://127.0.0.1:{free_port()}")
    token = signer.sign("alice")
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for method, path in PATHS:
            answer = client.request(method, path, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 503, (path, answer.text)
            assert answer.json()["error"]["code"] == "jobs_unavailable"
        # Encoded dot segments would climb out of the passed routes (to /metrics, /docs).
        headers = {"Authorization": f"Bearer {token}"}
        for path in ("/v1/files/%2E%2E/%2E%2E/metrics", "/jobs/%2e%2e/openapi.json"):
            climbing = client.get(path, headers=headers)
            assert climbing.status_code == 404, (path, climbing.text)
            assert climbing.json()["error"]["code"] == "not_found"
