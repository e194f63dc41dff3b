"""A deleted ModelServe is forgotten by the running operator: the real operator stops
probing a deleted `external` server. ModelServes carry no finalizer, so kopf never runs a
delete handler for them; the operator must learn of the deletion from its watch."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_operator import apply, manifest, wait_phase

pytestmark = pytest.mark.usefixtures("operator")
SERVED = "forgotten-model"


@contextlib.contextmanager
def models_server() -> Iterator[tuple[str, list[float]]]:
    """A server on 127.0.0.1 that lists SERVED; yields its base URL and when each request
    came (time.monotonic())."""
    seen: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(time.monotonic())
            body = json.dumps({"object": "list", "data": [{"id": SERVED}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
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


def test_a_deleted_external_server_is_no_longer_probed(crds: KubeCluster, namespace: str) -> None:
    with models_server() as (url, seen):
        body = manifest("external.yaml", spec__external__url=f"{url}/v1")
        body["spec"]["model"]["servedName"] = SERVED
        del body["spec"]["external"]["apiKeySecretRef"]
        name = apply(crds, namespace, body)
        wait_phase(crds, namespace, name, "Ready")

        crds.kubectl("delete", "-n", namespace, "ms", name, "--wait=true")

        def gone() -> bool:
            found = crds.kubectl("get", "-n", namespace, "ms", name, "--ignore-not-found")
            return not found.strip()

        wait_for(gone, timeout=30, what="the ModelServe to be deleted")
        # The test bed probes every second (OPERATOR_EXTERNAL_PROBE_INTERVAL): give the
        # operator two intervals to see the deletion and finish a probe under way, then
        # five more in which a remembered target would have been probed again.
        time.sleep(2)
        after = len(seen)
        time.sleep(5)
        assert len(seen) == after, f"{len(seen) - after} probes of a deleted ModelServe"
