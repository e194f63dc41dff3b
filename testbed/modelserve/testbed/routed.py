"""The gateway in front of one OpenAI-compatible server, the way benchmarks need it: the
test bed's control plane, PostgreSQL and operator, an `external` ModelServe for the
server, and `modelserve-gateway` routing to it once the operator reports it Ready."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr

from modelserve.common.tokens import ADMIN, TokenSettings, TokenSigner
from modelserve.testbed.kube import start_cluster
from modelserve.testbed.platform import (
    build_external_server,
    install_crds,
    operator_kubeconfig,
    serve_external,
    start_operator,
    start_service,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import start_postgres
from modelserve.testbed.processes import ManagedProcess

SECRET = "routed-gateway-secret-of-at-least-32-bytes"


@dataclass(frozen=True)
class RoutedGateway:
    url: str
    process: ManagedProcess
    token: str  # an admin's

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def configure(self, model: str, **defaults: str) -> None:
        """Set `model`'s scaling defaults (POST /configure), and give the watch a moment to
        bring them to the route table."""
        configured = httpx.post(
            f"{self.url}/configure",
            json={"model": model, **defaults},
            headers=self.headers,
            timeout=30,
        )
        configured.raise_for_status()
        time.sleep(2)


@contextlib.contextmanager
def routed_gateway(
    folder: Path, upstream: str, served_name: str, settings: Mapping[str, str] | None = None
) -> Iterator[RoutedGateway]:
    """Everything started under `folder`, and stopped on the way out. `upstream` is the
    server's OpenAI base URL (ending in /v1); `settings` go to the gateway."""
    with contextlib.ExitStack() as stack:
        cluster = start_cluster(folder / "kube")
        stack.callback(cluster.stop)
        install_crds(cluster)
        postgres = start_postgres(log_folder=folder / "logs")
        stack.callback(postgres.stop)
        database = postgres.create_database("gateway_bench")
        operator = start_operator(
            operator_kubeconfig(cluster),
            folder / "logs",
            {
                "OPERATOR_EXTERNAL_PROBE_INTERVAL": "5",
                # llama-cpp-python answers GET /v1/models only between two generations
                # (it takes the model's lock): under load a probe waits its turn.
                "OPERATOR_EXTERNAL_PROBE_TIMEOUT": "120",
                "OPERATOR_MODEL_STORE_ENDPOINT": "unused:9000",
                "OPERATOR_MODEL_STORE_ACCESS_KEY": "unused",
                "OPERATOR_MODEL_STORE_SECRET_KEY": "unused",
            },
        )
        stack.callback(operator.stop)
        serve_external(
            cluster,
            build_external_server(
                "upstream", "default", owner="bench", served_name=served_name, url=upstream
            ),
        )
        service = start_service(
            "gateway",
            folder / "logs",
            {
                "JWT_SECRET": SECRET,
                "GATEWAY_DATABASE_URL": database,
                "GATEWAY_KUBECONFIG": str(cluster.kubeconfig),
                "GATEWAY_ADMIN_PASSWORD": "bench-admin-password",
                "GATEWAY_LOG_LEVEL": "warning",
                **(settings or {}),
            },
        )
        stack.callback(service.stop)
        token = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET))).sign(
            "bench", roles=(ADMIN,)
        )
        gateway = RoutedGateway(service.url, service.process, token)

        def routed() -> bool:
            try:
                listed = httpx.get(f"{gateway.url}/v1/models", headers=gateway.headers)
            except httpx.TransportError:
                return False
            return listed.status_code == 200 and served_name in listed.text

        wait_for(routed, timeout=60, what="the gateway to route the upstream")
        yield gateway
