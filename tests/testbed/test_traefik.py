"""Traefik's release binary on the real control plane: IngressRoutes validated by Traefik's
own CRDs, read by Traefik as its own service account, routed to the gateway's file service."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import run
from modelserve.testbed.traefik import (
    GATEWAY_SERVICE,
    TRAEFIK_VERSION,
    RunningTraefik,
    build_arguments,
    ensure_traefik,
    start_traefik,
)

ROUTE_HEADER = "X-Test-Route"


class _Echo(BaseHTTPRequestHandler):
    """The stand-in gateway: answers with the path it was asked for and the route mark,
    which it reads as a WSGI server would (X_Test_Route and X-Test-Route alike)."""

    def do_GET(self) -> None:
        route = self.headers.get(ROUTE_HEADER) or self.headers.get(ROUTE_HEADER.replace("-", "_"))
        body = json.dumps({"path": self.path, "route": route}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: Traefik's access log already lists every request."""


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def ingress(crds: KubeCluster, testbed_dir: Path, gateway: str) -> Iterator[RunningTraefik]:
    traefik = start_traefik(testbed_dir / "traefik", crds, gateway_url=gateway)
    yield traefik
    traefik.stop()


def echoed(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


def marked_route(namespace: str, *, kind: str = "Rule") -> list[dict[str, Any]]:
    """An IngressRoute for /abc/ to the gateway's file service, through a Middleware that
    marks the requests it routes with the namespace's name."""
    middleware = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "Middleware",
        "metadata": {"name": "mark", "namespace": namespace},
        "spec": {"headers": {"customRequestHeaders": {ROUTE_HEADER: namespace}}},
    }
    route = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "IngressRoute",
        "metadata": {"name": "abc", "namespace": namespace},
        "spec": {
            "routes": [
                {
                    "kind": kind,
                    "match": "PathPrefix(`/abc/`)",
                    "middlewares": [{"name": "mark"}],
                    "services": [{"name": f"{GATEWAY_SERVICE}@file", "kind": "TraefikService"}],
                }
            ]
        },
    }
    return [middleware, route]


def test_the_binary_is_the_pinned_release() -> None:
    version = run([ensure_traefik(), "version"])
    assert re.search(rf"^Version:\s+{re.escape(TRAEFIK_VERSION)}$", version, re.MULTILINE)


def test_traefik_listens_on_loopback_only(tmp_path: Path) -> None:
    arguments = build_arguments(
        port=8080,
        ping_port=8081,
        dynamic_file=tmp_path / "dynamic.yml",
        access_log=tmp_path / "access.log",
        api_server="https://127.0.0.1:6443",
        token_file=tmp_path / "token",
        ca_file=tmp_path / "ca.crt",
    )
    addresses = [arg.split("=", 1)[1] for arg in arguments if arg.endswith(("8080", "8081"))]
    assert addresses == ["127.0.0.1:8080", "127.0.0.1:8081"]
    assert not [arg for arg in arguments if arg.startswith(("--api", "--dashboard"))]


def test_an_ingressroute_reaches_the_gateway_with_its_path(
    ingress: RunningTraefik, crds: KubeCluster, namespace: str
) -> None:
    crds.kubectl(
        "apply",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": marked_route(namespace)}),
    )
    url = f"{ingress.url}/abc/v1/models?x=1"

    def routed() -> dict[str, Any] | None:
        # Until Traefik has the route, the catch-all answers: unmarked.
        found = echoed(url)
        return found if found["route"] == namespace else None

    answer = wait_for(routed, timeout=30, what="Traefik to route /abc/ by the IngressRoute")
    assert answer == {"path": "/abc/v1/models?x=1", "route": namespace}

    crds.kubectl("delete", "ingressroute", "abc", "-n", namespace)
    wait_for(
        lambda: echoed(url)["route"] is None,
        timeout=30,
        what="the catch-all to take /abc/ back once the IngressRoute is gone",
    )
    # Traefik read every resource it watches with the rights of its own ClusterRole.
    assert "forbidden" not in ingress.process.log_path.read_text()


def test_the_catch_all_reaches_the_gateway(ingress: RunningTraefik) -> None:
    assert echoed(f"{ingress.url}/v1/chat/completions") == {
        "path": "/v1/chat/completions",
        "route": None,
    }


def test_a_header_aliasing_a_managed_one_is_dropped(ingress: RunningTraefik) -> None:
    """A client cannot pass X_ModelServe_User for the X-ModelServe-User of forward auth."""
    spoofed = echoed(f"{ingress.url}/v1/models", {ROUTE_HEADER.replace("-", "_"): "spoofed"})
    assert spoofed["route"] is None


def test_traefiks_crd_refuses_a_bogus_route(crds: KubeCluster, namespace: str) -> None:
    route = marked_route(namespace, kind="Bogus")[1]
    with pytest.raises(RuntimeError) as refused:
        crds.kubectl("apply", stdin=json.dumps(route))
    assert 'spec.routes[0].kind: Unsupported value: "Bogus"' in str(refused.value)
