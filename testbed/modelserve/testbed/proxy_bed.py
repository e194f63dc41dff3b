"""The platform around one OpenAI-compatible upstream, for `bench/gateway_proxy.py`: the
test bed's control plane, PostgreSQL and operator, an `external` ModelServe for the
upstream (owned by `OWNER`), and then, one after the other, gateways with the settings
each measurement needs, and a contract service on the same PostgreSQL.

Unlike `routed.routed_gateway`, which starts one gateway with the rest, this keeps the rest
running while gateways come and go: one worker or two, with or without the contract
service, each measured alone on the machine."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from modelserve.common.tokens import ADMIN, TokenSettings, TokenSigner
from modelserve.testbed.kube import start_cluster
from modelserve.testbed.platform import (
    RunningService,
    build_external_server,
    install_crds,
    operator_kubeconfig,
    serve_external,
    start_operator,
    start_service,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import PostgresServer, start_postgres

SECRET = "proxy-bench-secret-of-at-least-32-bytes"
# The server's owner and the benchmark's caller: a user, not an admin (admins are never
# limited), inferring on their own server.
OWNER = "bench"
# Answers in a row, each on a connection of its own, that must list the model before a
# gateway counts as routed: with several workers, each must have synced its route table.
ROUTED_IN_A_ROW = 20


@dataclass(frozen=True)
class ProxyBed:
    folder: Path
    postgres: PostgresServer
    kubeconfig: Path
    model: str
    signer: TokenSigner

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    def caller_token(self) -> str:
        """The owner's token (no role): what every measured request sends."""
        return self.signer.sign(OWNER)

    def admin_token(self) -> str:
        return self.signer.sign(f"{OWNER}-admin", roles=(ADMIN,))

    @contextlib.contextmanager
    def gateway(self, settings: Mapping[str, str]) -> Iterator[RunningService]:
        """`modelserve-gateway` with `settings` (GATEWAY_*) added, once it routes the
        model; stopped (SIGTERM) on the way out."""
        service = start_service(
            "gateway",
            self.logs,
            {
                "JWT_SECRET": SECRET,
                "GATEWAY_DATABASE_URL": self.postgres.dsn("gateway_bench"),
                "GATEWAY_KUBECONFIG": str(self.kubeconfig),
                "GATEWAY_ADMIN_PASSWORD": "bench-admin-password",
                "GATEWAY_LOG_LEVEL": "warning",
                **settings,
            },
        )
        try:
            headers = {"Authorization": f"Bearer {self.caller_token()}"}
            in_a_row = 0

            def routed() -> bool:
                nonlocal in_a_row
                try:
                    listed = httpx.get(f"{service.url}/v1/models", headers=headers)
                except httpx.TransportError:
                    return False
                ok = listed.status_code == 200 and self.model in listed.text
                in_a_row = in_a_row + 1 if ok else 0
                return in_a_row >= ROUTED_IN_A_ROW

            wait_for(routed, timeout=90, what="the gateway to route the upstream", interval=0.1)
            yield service
        finally:
            service.stop()

    @contextlib.contextmanager
    def contract(
        self, limits: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> Iterator[RunningService]:
        """`modelserve-contract` on its own database of this PostgreSQL, with `limits`
        as the caller's contract (and `env` added to its environment); stopped on the
        way out."""
        service = start_service(
            "contract",
            self.logs,
            {
                "JWT_SECRET": SECRET,
                "CONTRACT_DATABASE_URL": self.postgres.dsn("contract_bench"),
                "CONTRACT_INVENTORY_SECONDS": "0",
                "CONTRACT_DEFAULT_NAMESPACES": "*",
                "CONTRACT_LOG_LEVEL": "warning",
                **(env or {}),
            },
        )
        try:
            put = httpx.put(
                f"{service.url}/contracts/user/{OWNER}",
                json=dict(limits),
                headers={"Authorization": f"Bearer {self.admin_token()}"},
                timeout=30,
            )
            put.raise_for_status()
            yield service
        finally:
            service.stop()


@contextlib.contextmanager
def proxy_bed(folder: Path, upstream: str, served_name: str) -> Iterator[ProxyBed]:
    """Everything but the gateways, started under `folder` and stopped on the way out.
    `upstream` is the server's OpenAI base URL (ending in /v1)."""
    with contextlib.ExitStack() as stack:
        cluster = start_cluster(folder / "kube")
        stack.callback(cluster.stop)
        install_crds(cluster)
        postgres = start_postgres(log_folder=folder / "logs")
        stack.callback(postgres.stop)
        postgres.create_database("gateway_bench")
        postgres.create_database("contract_bench")
        operator = start_operator(
            operator_kubeconfig(cluster),
            folder / "logs",
            {
                "OPERATOR_EXTERNAL_PROBE_INTERVAL": "5",
                "OPERATOR_MODEL_STORE_ENDPOINT": "unused:9000",
                "OPERATOR_MODEL_STORE_ACCESS_KEY": "unused",
                "OPERATOR_MODEL_STORE_SECRET_KEY": "unused",
            },
        )
        stack.callback(operator.stop)
        serve_external(
            cluster,
            build_external_server(
                "upstream", "default", owner=OWNER, served_name=served_name, url=upstream
            ),
        )
        signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
        yield ProxyBed(folder, postgres, cluster.kubeconfig, served_name, signer)
