"""Every route of the gateway, sent what a careless or hostile client sends: never a 5xx."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.gateway.app import create_app
from modelserve.gateway.settings import GatewaySettings
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for

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


# Odd path parameters, as sent on the wire: a NUL byte, bytes that are not UTF-8, a
# right-to-left override, a climb out of the path, a long one.
ODD_PARAMETERS = ("%00", "a%00b", "%FF%FE", "%E2%80%AE", "..%2F..%2Fetc", "x" * 2000)


def routes() -> list[tuple[str, str]]:
    """(method, path) of every route in the app's OpenAPI schema, path parameters filled."""
    app = create_app(GatewaySettings(tokens=TokenSettings(development=True)))
    # The routes kept out of the schema: Prometheus' and Traefik's.
    found = [("GET", "/metrics"), ("GET", "/auth/verify?server=x"), ("POST", "/auth/verify")]
    for path, operations in app.openapi()["paths"].items():
        filled = path.replace("{model}", "no/such").replace("{", "").replace("}", "")
        found += [(method.upper(), filled) for method in sorted(operations)]
    return found


def odd_routes() -> list[tuple[str, str]]:
    """(method, path) of every route with path parameters, each filled with each odd value;
    and the Traefik route's query with them."""
    app = create_app(GatewaySettings(tokens=TokenSettings(development=True)))
    found = [("GET", f"/auth/verify?server={odd}") for odd in ODD_PARAMETERS]
    for path, operations in app.openapi()["paths"].items():
        if "{" not in path:
            continue
        for odd in ODD_PARAMETERS:
            filled = re.sub(r"\{[^}]+\}", odd, path)
            found += [(method.upper(), filled) for method in sorted(operations)]
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
    # Until its first list of ModelServes, the gateway rightly answers 503 (loading).
    wait_for(
        lambda: (
            httpx.get(
                f"{gateway.url}/auth/verify?server=none",
                headers={"Authorization": f"Bearer {admin}"},
            ).status_code
            == 404
        ),
        timeout=30,
        what="the gateway's routes",
    )
    sweep = routes()
    assert ("POST", "/v1/chat/completions") in sweep and ("POST", "/serve") in sweep
    assert len(sweep) > 25
    failures = []
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for method, path in sweep:
            for token in (admin, user, "forged"):
                headers = {"Authorization": f"Bearer {token}"}
                for name, body, content_type in BODIES if method != "GET" else [("", b"", "")]:
                    sent = {**headers, "Content-Type": content_type}
                    answer = client.request(method, path, content=body, headers=sent)
                    kind = answer.headers.get("content-type", "")
                    # JSON everywhere; Prometheus' text format at /metrics.
                    if answer.status_code >= 500 or not kind.startswith((JSON, "text/plain")):
                        failures.append(
                            f"{method} {path} ({name}): {answer.status_code} {kind} "
                            f"{answer.text[:80]}"
                        )
        # Odd values in the path (and in the query of /auth/verify): never a 5xx.
        for method, path in odd_routes():
            for token in (admin, user):
                sent = {"Authorization": f"Bearer {token}", "Content-Type": JSON}
                answer = client.request(method, path, content=b"{}", headers=sent)
                kind = answer.headers.get("content-type", "")
                if answer.status_code >= 500 or not kind.startswith(JSON):
                    failures.append(
                        f"{method} {path[:60]}: {answer.status_code} {kind} {answer.text[:80]}"
                    )
    assert failures == []
