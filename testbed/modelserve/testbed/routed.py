"""The gateway in front of one OpenAI-compatible server, the way benchmarks need it: the
test bed's control plane, PostgreSQL and operator, an `external` ModelServe for the
server, and `modelserve-gateway` routing to it once the operator reports it Ready."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pydantic import SecretStr

from modelserve.common.modelserve import GROUP, KIND, OWNER_LABEL, PLURAL, VERSION
from modelserve.common.tokens import ADMIN, TokenSettings, TokenSigner
from modelserve.testbed.kube import start_cluster
from modelserve.testbed.platform import (
    install_crds,
    operator_kubeconfig,
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
    port: int
    process: ManagedProcess
    token: str  # an admin's

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


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
        api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
        stack.callback(api.close)
        custom = k8s.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "metadata": {"name": "upstream", "labels": {OWNER_LABEL: "bench"}},
                "spec": {
                    "runtime": "external",
                    "model": {"servedName": served_name},
                    "external": {"url": upstream},
                },
            },
        )

        def ready() -> bool:
            body = custom.get_namespaced_custom_object(
                GROUP, VERSION, "default", PLURAL, "upstream"
            )
            return bool((body.get("status") or {}).get("phase") == "Ready")

        wait_for(ready, timeout=60, what="the upstream's ModelServe to be Ready")
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
        gateway = RoutedGateway(
            service.url, int(service.url.rsplit(":", 1)[1]), service.process, token
        )

        def routed() -> bool:
            try:
                listed = httpx.get(f"{gateway.url}/v1/models", headers=gateway.headers)
            except httpx.TransportError:
                return False
            return listed.status_code == 200 and served_name in listed.text

        wait_for(routed, timeout=60, what="the gateway to route the upstream")
        yield gateway
