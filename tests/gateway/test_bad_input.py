"""Every route of the gateway, sent what a careless or hostile client sends: never a 5xx."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi.routing import APIRoute

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.gateway.app import create_app
from modelserve.gateway.settings import GatewaySettings
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningService

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

JSON = "application/json"
BODIES: list[tuple[str, bytes, str]] = [
    ("nothing", b"", "application/json"),
    ("broken JSON", b'{"model": ', "application/json"),
    ("a list", b"[1, 2]", "application/json"),
    ("a string", b'"x"', "application/json"),
    ("null", b"null", "application/json"),
    (
        "wrong types",
        b'{"model": 5, "messages": "hi", "username": [], "replicas": "two"}',
        "application/json",
    ),
    (
        "NUL bytes",
        b'{"model": "a\\u0000b", "username": "a\\u0000", "name": "\\u0000"}',
        "application/json",
    ),
    ("not JSON at all", b"\xff\xfe\x00garbage", "application/octet-stream"),
    ("a form", b"username=&password=", "application/x-www-form-urlencoded"),
    ("huge", b'{"model": "' + b"x" * (9 << 20) + b'"}', "application/json"),
]


def routes() -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, path parameters filled in."""
    app = create_app(GatewaySettings(tokens=TokenSettings(development=True)))
    found = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        path = route.path.replace("{model:path}", "no/such").replace("{", "").replace("}", "")
        found += [(method, path) for method in sorted((route.methods or set()) - {"HEAD"})]
    return found


def test_no_route_answers_5xx_to_a_bad_request(
    start_gateway: Callable[..., RunningService],
    crds: KubeCluster,
    gateway_kube: str,
    signer: TokenSigner,
) -> None:
    gateway = start_gateway(GATEWAY_KUBECONFIG=gateway_kube)
    admin = signer.sign("admin", roles=("admin",))
    user = signer.sign("mallory")
    sweep = routes()
    assert ("POST", "/v1/chat/completions") in sweep and ("POST", "/serve") in sweep
    assert len(sweep) > 25
    failures = []
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for method, path in sweep:
            for token in (admin, user, "forged"):
                headers = {"Authorization": f"Bearer {token}"}
                for name, body, content_type in BODIES if method != "GET" else [("", b"", "")]:
                    answer = client.request(
                        method,
                        path,
                        content=body,
                        headers={**headers, "Content-Type": content_type},
                    )
                    if answer.status_code >= 500 or not answer.headers.get(
                        "content-type", ""
                    ).startswith(("application/json", "text/plain; version=0.0.4")):
                        failures.append(
                            f"{method} {path} ({name}): {answer.status_code} {answer.text[:120]}"
                        )
    assert failures == []
