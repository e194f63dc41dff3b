"""No 5xx for a client's mistake: bad input found by hand (a NUL byte, which PostgreSQL
refuses in text), then generated input against the service's own OpenAPI schema
(schemathesis): every operation gets a few dozen requests that hypothesis makes from the
schema, valid and invalid ones (wrong types, out-of-range numbers, odd strings), with an
admin token so that they reach the handlers. No answer may be a 5xx, and an answer whose
status the schema documents must have its documented content type and shape.

The service runs as a process on real PostgreSQL and the test bed's two MinIO stores.
Bounded: `EXAMPLES` per operation, no shrinking, and past `SWEEP_SECONDS` the rest of the
examples are left out (never failed).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
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
from modelserve.download.app import create_app
from modelserve.download.settings import DownloadSettings
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.testing_services import service_on_fresh_schema

pytestmark = [pytest.mark.postgres, pytest.mark.minio]

EXAMPLES = 30
# Only signs nothing: the schema is built with it, no token.
SCHEMA_SECRET = "schema-only-secret-of-at-least-32-bytes"
SWEEP_SECONDS = 240.0
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]

BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/status/a%00b", None),
        ("GET", "/models/a%00b", None),
        ("POST", "/download/a%00b/cancel", None),
        ("POST", "/download/a%00b/retry", None),
        ("POST", "/download/a%00b", None),
        ("POST", "/download/m", {"name": "a\x00b"}),
        ("POST", "/downloads", {"key": "m/model.gguf", "name": "a\x00b"}),
        ("POST", "/downloads", {"key": "m/model.gguf", "bucket": "a\x00b"}),
        ("POST", "/downloads", {"key": "m/model.gguf", "model_id": "a\x00b"}),
        ("POST", "/downloads", {"key": "m/model.gguf", "sha256": "a\x00b"}),
        ("GET", "/downloads?state=a%00b", None),
        # A lone surrogate: valid JSON, but no UTF-8 (what PostgreSQL and S3 take).
        ("POST", "/downloads", '{"key": "m/\\ud800.gguf"}'),
        ("POST", "/downloads", '{"prefix": "m\\udfff"}'),
        ("POST", "/downloads", '{"key": "m/model.gguf", "name": "\\ud800"}'),
        ("POST", "/download/m", '{"name": "\\ud800"}'),
        ("GET", "/status/%ED%A0%80", None),
        ("POST", "/download/%ED%A0%80", None),
    ],
)
def test_bad_text_is_a_4xx_json_error(
    admin: httpx.Client,
    upstream_store: MinioServer,
    upstream_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
    method: str,
    path: str,
    body: dict[str, Any] | str | None,
) -> None:
    """A NUL byte (PostgreSQL refuses it in text) or text that is not Unicode."""
    upstream_store.put(upstream_bucket, "m/model.gguf", b"x" * 10)
    if isinstance(body, str):
        headers = {"Content-Type": "application/json"}
        answer = admin.request(method, path, content=body.encode(), headers=headers)
    else:
        answer = admin.request(method, path, json=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    assert answer.json()["error"]["code"], answer.text


class Sweep:
    """The service under the sweep: its URL, the token it is sent, and its time bound."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}
        self._ends = time.monotonic() + SWEEP_SECONDS

    @property
    def over(self) -> bool:
        return time.monotonic() > self._ends


@pytest.fixture(scope="module")
def sweep(
    database_url: str,
    testbed_dir: Path,
    upstream_store: MinioServer,
    platform_store: MinioServer,
    signer: TokenSigner,
    token_settings: dict[str, str],
) -> Iterator[Sweep]:
    """The download service for the whole sweep, on a schema and buckets of its own."""
    buckets = {
        store.name: f"generated-{uuid.uuid4().hex[:8]}"
        for store in (upstream_store, platform_store)
    }
    for store in (upstream_store, platform_store):
        store.client().make_bucket(buckets[store.name])
    settings = {
        **token_settings,
        "DOWNLOAD_UPSTREAM_ENDPOINT": upstream_store.endpoint,
        "DOWNLOAD_UPSTREAM_ACCESS_KEY": upstream_store.access_key,
        "DOWNLOAD_UPSTREAM_SECRET_KEY": upstream_store.secret_key,
        "DOWNLOAD_UPSTREAM_BUCKETS": buckets[upstream_store.name],
        "DOWNLOAD_PLATFORM_ENDPOINT": platform_store.endpoint,
        "DOWNLOAD_PLATFORM_ACCESS_KEY": platform_store.access_key,
        "DOWNLOAD_PLATFORM_SECRET_KEY": platform_store.secret_key,
        "DOWNLOAD_PLATFORM_BUCKET": buckets[platform_store.name],
        "DOWNLOAD_WORKER_ID": f"generated-{uuid.uuid4().hex[:6]}",
    }
    with service_on_fresh_schema(
        "download", database_url, testbed_dir / "logs", settings, prefix="download_generated"
    ) as service:
        yield Sweep(service.url, signer.sign("sweeper", roles=("admin",)))


def _openapi() -> dict[str, Any]:
    """The service's OpenAPI schema, from the code the service runs (pure: nothing starts).
    Known when tests are collected, so the sweep is parametrized by operation without
    schemathesis's fixture-loaded mode, which pytest 9 breaks (it rewrites node ids)."""
    settings = DownloadSettings(tokens=TokenSettings(secret=SecretStr(SCHEMA_SECRET)))
    return create_app(settings).openapi()


download_api = schemathesis.openapi.from_dict(_openapi())


@download_api.parametrize()
@BOUNDED
def test_the_download_service_answers_generated_input_without_5xx(
    case: schemathesis.Case[Any], sweep: Sweep
) -> None:
    if not sweep.over:
        case.call_and_validate(base_url=sweep.url, headers=sweep.headers, checks=CHECKS)
