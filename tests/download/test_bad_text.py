"""No 5xx for a client's mistake: bad text found by hand (a NUL byte, which PostgreSQL
refuses in text; text that is not Unicode) in every place a client puts text. The
generated-input sweep of the service's OpenAPI schema (schemathesis) is
tests/services/test_schema_sweeps.py, with the other services'.

The service runs as a process on real PostgreSQL and the test bed's two MinIO stores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from modelserve.testbed.objectstores import MinioServer

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
