"""Generated input against each service's own OpenAPI schema (schemathesis): every
operation of the gateway, the contract, download and jobs services gets a few
dozen requests that hypothesis makes from the schema (valid ones and, in negative mode,
invalid ones: wrong types, out-of-range numbers, odd strings), with a valid admin token
so that they reach the handlers. No answer may be a 5xx, and an answer whose status the
schema documents must have its documented content type and shape.

The services run as processes on real PostgreSQL (the gateway with the control plane of
the test bed, as in production; the download service with the MinIO stores). Their
schemas are the ones they serve at /openapi.json, made from the same code when the module
is collected (schemathesis' fixture-loaded schemas do not work with pytest 9). Bounded:
`EXAMPLES` per operation, no shrinking, and past `SWEEP_SECONDS` of one service the rest
of its examples are left out (never failed).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.contract.app import create_app as contract_app
from modelserve.contract.settings import ContractSettings
from modelserve.download.app import create_app as download_app
from modelserve.download.settings import DownloadSettings
from modelserve.gateway.app import create_app as gateway_app
from modelserve.gateway.settings import GatewaySettings
from modelserve.jobs.app import create_app as jobs_app
from modelserve.jobs.settings import JobsSettings
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService, gateway_kubeconfig
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_services import service_on_fresh_schema

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio]

SECRET = "generated-input-secret-of-at-least-32-bytes"
ADMIN_PASSWORD = "generated-input-admin-password"
EXAMPLES = 30
SWEEP_SECONDS = 300.0
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
# Known findings in services this sweep does not fix: operation label -> why. Each is
# marked xfail (not strict: the owner's fix turns it into a pass).
KNOWN: dict[str, str] = {}

BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


class Sweep:
    """A service under the sweep: its URL, the token it is sent, and its time bound."""

    def __init__(self, url: str, token: str, *, reached: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}
        # The token works: the sweep reaches the handlers, not only the token check.
        answer = httpx.get(f"{url}{reached}", headers=self.headers, timeout=30)
        assert answer.status_code == 200, answer.text
        self._ends = time.monotonic() + SWEEP_SECONDS

    @property
    def over(self) -> bool:
        return time.monotonic() > self._ends


def _known(case: schemathesis.Case[Any], request: pytest.FixtureRequest) -> None:
    reason = KNOWN.get(case.operation.label)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=False))


# --- The gateway ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(crds: KubeCluster, database_url: str, testbed_dir: Path) -> Iterator[Sweep]:
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
        # Servers the sweep might create land in a namespace of its own.
        "GATEWAY_NAMESPACE": f"generated-{uuid.uuid4().hex[:8]}",
    }
    with service_on_fresh_schema(
        "gateway", database_url, testbed_dir / "logs", settings, prefix="gateway_generated"
    ) as service:
        yield Sweep(service.url, _sweeper_token(service), reached="/auth/me")


def _sweeper_token(gateway: RunningService) -> str:
    """A token of an admin of its own, whom generated names will not hit (the first admin
    may be renamed, disabled or given another password by the sweep)."""
    signed_in = httpx.post(
        f"{gateway.url}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    admin = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    name, password = f"sweeper-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    body = {"username": name, "password": password, "role": "admin"}
    created = httpx.post(f"{gateway.url}/users", json=body, headers=admin)
    assert created.status_code == 201, created.text
    token = httpx.post(f"{gateway.url}/auth/token", json={"username": name, "password": password})
    assert token.status_code == 200, token.text
    access: str = token.json()["access_token"]
    # Until its first list of ModelServes the gateway rightly answers 503 (loading).
    wait_for(
        lambda: (
            httpx.get(
                f"{gateway.url}/auth/verify?server=none",
                headers={"Authorization": f"Bearer {access}"},
            ).status_code
            == 404
        ),
        timeout=30,
        what="the gateway's routes",
    )
    return access


DEVELOPMENT = TokenSettings(development=True)  # only to build the app: its schema
gateway_api = schemathesis.openapi.from_dict(
    gateway_app(GatewaySettings(tokens=DEVELOPMENT)).openapi()
)


@gateway_api.parametrize()
@BOUNDED
def test_the_gateway_answers_generated_input_without_5xx(
    case: schemathesis.Case[Any], gateway: Sweep, request: pytest.FixtureRequest
) -> None:
    _known(case, request)
    if not gateway.over:
        case.call_and_validate(base_url=gateway.url, headers=gateway.headers, checks=CHECKS)


# --- The contract service ------------------------------------------------------------


@pytest.fixture(scope="module")
def contract(database_url: str, testbed_dir: Path) -> Iterator[Sweep]:
    settings = {"JWT_SECRET": SECRET, "CONTRACT_INVENTORY_SECONDS": "0"}
    with service_on_fresh_schema(
        "contract", database_url, testbed_dir / "logs", settings, prefix="contract_generated"
    ) as service:
        signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
        yield Sweep(service.url, signer.sign("sweeper", roles=("admin",)), reached="/contracts")


contract_api = schemathesis.openapi.from_dict(
    contract_app(ContractSettings(tokens=DEVELOPMENT)).openapi()
)


@contract_api.parametrize()
@BOUNDED
def test_the_contract_service_answers_generated_input_without_5xx(
    case: schemathesis.Case[Any], contract: Sweep, request: pytest.FixtureRequest
) -> None:
    _known(case, request)
    if not contract.over:
        case.call_and_validate(base_url=contract.url, headers=contract.headers, checks=CHECKS)


# --- The download service ------------------------------------------------------------


@pytest.fixture(scope="module")
def download(
    database_url: str,
    testbed_dir: Path,
    upstream_store: MinioServer,
    platform_store: MinioServer,
) -> Iterator[Sweep]:
    upstream, platform = f"gen-up-{uuid.uuid4().hex[:8]}", f"gen-pf-{uuid.uuid4().hex[:8]}"
    upstream_store.client().make_bucket(upstream)
    platform_store.client().make_bucket(platform)
    upstream_store.put(upstream, "tiny/Tiny.Q4_0.gguf", b"GGUF" + bytes(1024))
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
    }
    with service_on_fresh_schema(
        "download", database_url, testbed_dir / "logs", settings, prefix="download_generated"
    ) as service:
        signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
        yield Sweep(service.url, signer.sign("sweeper", roles=("admin",)), reached="/downloads")


download_api = schemathesis.openapi.from_dict(
    download_app(DownloadSettings(tokens=DEVELOPMENT)).openapi()
)


@download_api.parametrize()
@BOUNDED
def test_the_download_service_answers_generated_input_without_5xx(
    case: schemathesis.Case[Any], download: Sweep, request: pytest.FixtureRequest
) -> None:
    _known(case, request)
    if not download.over:
        case.call_and_validate(base_url=download.url, headers=download.headers, checks=CHECKS)


# --- The jobs service ------------------------------------------------------------------


@pytest.fixture(scope="module")
def jobs(database_url: str, platform_store: MinioServer, testbed_dir: Path) -> Iterator[Sweep]:
    """The jobs service with its platform store (files, datasets) and no gateway: its
    routes answer, no item runs."""
    bucket = f"gen-jobs-{uuid.uuid4().hex[:8]}"
    platform_store.client().make_bucket(bucket)
    settings = {
        "JWT_SECRET": SECRET,
        "JOBS_STORE_ENDPOINT": platform_store.endpoint,
        "JOBS_STORE_ACCESS_KEY": platform_store.access_key,
        "JOBS_STORE_SECRET_KEY": platform_store.secret_key,
        "JOBS_STORE_BUCKET": bucket,
        "JOBS_WORKER_ID": f"worker-{uuid.uuid4().hex[:6]}",
    }
    with service_on_fresh_schema(
        "jobs", database_url, testbed_dir / "logs", settings, prefix="jobs_generated"
    ) as service:
        signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
        yield Sweep(service.url, signer.sign("sweeper", roles=("admin",)), reached="/jobs/stats")


jobs_api = schemathesis.openapi.from_dict(jobs_app(JobsSettings(tokens=DEVELOPMENT)).openapi())


@jobs_api.parametrize()
@BOUNDED
def test_the_jobs_service_answers_generated_input_without_5xx(
    case: schemathesis.Case[Any], jobs: Sweep, request: pytest.FixtureRequest
) -> None:
    _known(case, request)
    if not jobs.over:
        case.call_and_validate(base_url=jobs.url, headers=jobs.headers, checks=CHECKS)
