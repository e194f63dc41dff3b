"""The serving loop on the real components: the operator makes a llama.cpp server whose
pods really run on the pod network, the gateway routes to their endpoints, Traefik's
per-server route leads to the gateway."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import SecretStr

from modelserve.common.tokens import ADMIN, TokenSettings, TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningOperator, gateway_kubeconfig
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_loop import Loop, modelserve, wait_ready
from modelserve.testbed.testing_services import service_on_fresh_schema
from modelserve.testbed.traefik import start_traefik

SECRET = "serving-tests-secret-of-at-least-32-bytes"


@pytest.fixture(scope="module")
def loop(
    crds: KubeCluster,
    operator: RunningOperator,
    smollm2_uri: str,
    database_url: str,
    testbed_dir: Path,
) -> Iterator[Loop]:
    namespace = f"loop-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", namespace)
    name = "smollm2"
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "serving-loop-admin-password",
        "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
        "GATEWAY_WATCH_NAMESPACES": namespace,
    }
    logs = testbed_dir / "logs"
    with service_on_fresh_schema("gateway", database_url, logs, settings, prefix="loop") as gateway:
        traefik = start_traefik(testbed_dir / f"traefik-{namespace}", crds, gateway_url=gateway.url)
        try:
            crds.kubectl(
                "apply", "-n", namespace, stdin=yaml.safe_dump(modelserve(name, smollm2_uri, 2))
            )
            found = wait_ready(crds, namespace, name, 2)
            server_id = found["status"]["serverId"]
            loop = Loop(crds, namespace, name, server_id, gateway, traefik, signer)
            admin = {"Authorization": f"Bearer {signer.sign('root', roles=(ADMIN,))}"}

            def routed() -> bool:
                answer = httpx.post(
                    f"{loop.route_url}/chat/completions",
                    json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
                    headers=admin,
                    timeout=30,
                )
                return answer.status_code == 200

            wait_for(routed, timeout=60, what="Traefik and the gateway to route the server")
            yield loop
        finally:
            traefik.stop()
            crds.kubectl("delete", "namespace", namespace, "--wait=false")
