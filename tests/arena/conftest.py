"""The whole path of the arena: the gateway and the contract service as processes, the
operator, and SmolLM2 served under two names (two llama.cpp servers) in a platform
namespace."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from pydantic import SecretStr

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.arena_platform import ArenaPlatform
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import LlmServer, start_llm
from modelserve.testbed.platform import (
    RunningOperator,
    build_external_server,
    gateway_kubeconfig,
    serve_external,
    start_service,
)
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.testing_services import service_on_fresh_schema

SECRET = "arena-tests-secret-of-at-least-32-bytes-long"
SECOND = "smollm2-135m-best-of-2"  # SmolLM2 again, with best-of-2 by default


@pytest.fixture(scope="module")
def arena_platform(
    crds: KubeCluster,
    operator: RunningOperator,
    kube_api: k8s.ApiClient,
    llm: LlmServer,
    database_url: str,
    testbed_dir: Path,
) -> Iterator[ArenaPlatform]:
    suffix = uuid.uuid4().hex[:8]
    namespace, users = f"arena-{suffix}", f"arena-users-{suffix}"
    core = k8s.CoreV1Api(kube_api)
    for name in (namespace, users):
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    logs = testbed_dir / "logs"
    try:
        with contextlib.ExitStack() as stack:
            second = start_llm(testbed_dir, alias=SECOND)
            stack.callback(second.stop)
            serve_external(
                crds,
                build_external_server(
                    "smollm2", namespace, owner="root", served_name=llm.alias, url=llm.url
                ),
            )
            scaled = build_external_server(
                "smollm2-best-of-2", namespace, owner="root", served_name=SECOND, url=second.url
            )
            scaled["spec"]["scaling"] = {"algorithm": "best-of-n", "budget": 2, "reward": "logprob"}
            serve_external(crds, scaled)
            contract = stack.enter_context(
                service_on_fresh_schema(
                    "contract",
                    database_url,
                    logs,
                    {"JWT_SECRET": SECRET, "CONTRACT_INVENTORY_SECONDS": "0"},
                    prefix="arena_contract",
                )
            )
            gateway_schema = stack.enter_context(fresh_schema(database_url, "arena_gateway"))
            gateway = start_service(
                "gateway",
                logs,
                {
                    "JWT_SECRET": SECRET,
                    "GATEWAY_DATABASE_URL": schema_url(database_url, gateway_schema),
                    "GATEWAY_ADMIN_USERNAME": "admin",
                    "GATEWAY_ADMIN_PASSWORD": "arena-platform-admin-password",
                    "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
                    "GATEWAY_PLATFORM_NAMESPACES": namespace,
                    "GATEWAY_CONTRACT_URL": contract.url,
                    "GATEWAY_USAGE_FLUSH_SECONDS": "0.2",
                    "GATEWAY_ARENA_COUNTED_VOTES_PER_DAY": "2",
                },
            )
            stack.callback(gateway.stop)
            signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
            yield ArenaPlatform(gateway, contract, signer, (llm.alias, SECOND), namespace, users)
    finally:
        for name in (namespace, users):
            core.delete_namespace(name)
