"""Attacks through an `external` server's probe, against local servers on 127.0.0.1: the
API key of a Secret goes only to the hosts the Secret names, the probe follows no
redirect and copies nothing of the answer into the status."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from modelserve.common.modelserve import API_KEY_HOSTS_ANNOTATION, API_KEY_LABEL
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_operator import apply, get, manifest, wait_phase

pytestmark = pytest.mark.usefixtures("operator")
KEY = "sk-attack-test-0123456789"


@contextlib.contextmanager
def local_server(
    answer: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]],
) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP server on 127.0.0.1; yields its base URL and the headers of each request."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            status, headers, body = answer(self)
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def echo(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
    """A server that lists whatever was sent to it as the models it serves."""
    sent = handler.headers.get("Authorization", "nothing")
    body = json.dumps({"object": "list", "data": [{"id": sent}]}).encode()
    return 200, {"Content-Type": "application/json"}, body


def key_secret(kube: KubeCluster, namespace: str, hosts: str | None) -> None:
    kube.kubectl(
        "create", "secret", "generic", "key", "-n", namespace, f"--from-literal=api-key={KEY}"
    )
    kube.kubectl("label", "secret", "key", "-n", namespace, f"{API_KEY_LABEL}=true")
    if hosts is not None:
        annotation = f"{API_KEY_HOSTS_ANNOTATION}={hosts}"
        kube.kubectl("annotate", "secret", "key", "-n", namespace, annotation)


def external(url: str) -> dict[str, Any]:
    body = manifest("external.yaml", spec__external__url=f"{url}/v1")
    body["spec"]["external"]["apiKeySecretRef"] = {"name": "key", "key": "api-key"}
    return body


def test_an_api_key_goes_only_to_the_hosts_its_secret_names(
    crds: KubeCluster, namespace: str
) -> None:
    key_secret(crds, namespace, "api.openai.com,llm.example.internal:8443")
    with local_server(echo) as (url, seen):
        name = apply(crds, namespace, external(url))
        status = wait_phase(crds, namespace, name, "Degraded")
        assert API_KEY_HOSTS_ANNOTATION in status["message"]
        assert "127.0.0.1" in status["message"]
        assert not [headers for headers in seen if "Authorization" in headers]


def test_a_secret_without_hosts_sends_its_key_nowhere(crds: KubeCluster, namespace: str) -> None:
    key_secret(crds, namespace, None)
    with local_server(echo) as (url, seen):
        name = apply(crds, namespace, external(url))
        status = wait_phase(crds, namespace, name, "Degraded")
        assert API_KEY_HOSTS_ANNOTATION in status["message"]
        assert not [headers for headers in seen if "Authorization" in headers]


def test_the_status_copies_nothing_of_the_answer(crds: KubeCluster, namespace: str) -> None:
    """A server that echoes the key it got as a model id: the status does not show it."""
    with local_server(echo) as (url, seen):
        key_secret(crds, namespace, url.removeprefix("http://"))
        name = apply(crds, namespace, external(url))
        wait_for(lambda: seen, timeout=60, what="a probe")
        status = wait_phase(crds, namespace, name, "Degraded")
        assert seen[0]["Authorization"] == f"Bearer {KEY}"  # the host is named: it got the key
        assert KEY not in json.dumps(get(crds, namespace, "ms", name))
        assert status["message"].endswith("answered 200 without the served name")


def test_the_probe_follows_no_redirect(crds: KubeCluster, namespace: str) -> None:
    with local_server(echo) as (target, followed):

        def redirect(_: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
            return 302, {"Location": f"{target}/v1/models"}, b""

        with local_server(redirect) as (url, seen):
            key_secret(crds, namespace, url.removeprefix("http://"))
            name = apply(crds, namespace, external(url))
            status = wait_phase(crds, namespace, name, "Degraded")
            assert seen and not followed
            assert status["message"].endswith("answered 302")
