"""The platform from nothing, for benchmarks that serve a real model: the control plane,
the platform store with SmolLM2 in it, PostgreSQL, the operator and one gateway."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

from modelserve.testbed.kube import KubeCluster, start_cluster
from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.objectstores import PLATFORM_BUCKET, MinioServer, start_minio
from modelserve.testbed.platform import (
    RunningService,
    gateway_kubeconfig,
    install_crds,
    operator_kubeconfig,
    start_operator,
    start_service,
)
from modelserve.testbed.postgres import start_postgres
from modelserve.testbed.seeding import place_smollm2
from modelserve.testbed.traefik import GATEWAY_SERVICE


@dataclasses.dataclass(frozen=True)
class BenchBed:
    cluster: KubeCluster
    uri: str  # SmolLM2's GGUF in the platform store
    gateway: RunningService
    store: MinioServer  # the platform store


@contextlib.contextmanager
def bench_bed(
    folder: Path,
    *,
    secret: str,
    name: str,
    operator_settings: Mapping[str, str] | None = None,
) -> Iterator[BenchBed]:
    """Everything a benchmark's ModelServe needs, stopped on the way out. `secret` signs
    the gateway's tokens; `name` names its database; `operator_settings` add to the
    operator's (OPERATOR_*)."""
    with contextlib.ExitStack() as stack:
        cluster = start_cluster(folder / "kube")
        stack.callback(cluster.stop)
        install_crds(cluster)
        store = start_minio("platform", folder / "minio", bucket=PLATFORM_BUCKET)
        stack.callback(store.stop)
        uri = place_smollm2(store, ensure_runtime().model)
        postgres = start_postgres(log_folder=folder / "logs")
        stack.callback(postgres.stop)
        operator = start_operator(
            operator_kubeconfig(cluster),
            folder / "logs",
            {
                "OPERATOR_MODEL_STORE_ENDPOINT": cluster.expose_to_pods(store.port),
                "OPERATOR_MODEL_STORE_ACCESS_KEY": store.access_key,
                "OPERATOR_MODEL_STORE_SECRET_KEY": store.secret_key,
                "OPERATOR_ROUTE_SERVICE": f"{GATEWAY_SERVICE}@file",
                **(operator_settings or {}),
            },
        )
        stack.callback(operator.stop)
        gateway = start_service(
            "gateway",
            folder / "logs",
            {
                "JWT_SECRET": secret,
                "GATEWAY_DATABASE_URL": postgres.create_database(name),
                "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(cluster)),
                "GATEWAY_ADMIN_PASSWORD": f"{name}-admin",
                "GATEWAY_LOG_LEVEL": "warning",
            },
        )
        stack.callback(gateway.stop)
        yield BenchBed(cluster, uri, gateway, store)
