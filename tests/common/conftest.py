"""The whole path of a request, for the tests of request ids, readiness and shutdown: the
contract service and gateways as processes (JSON logs), the operator, and a model server
that records what it is sent and streams slowly (`RecordingUpstream`), served as an
`external` ModelServe in a platform namespace."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from pydantic import SecretStr

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import (
    RunningOperator,
    RunningService,
    build_external_server,
    gateway_kubeconfig,
    serve_external,
    start_service,
)
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.recording_upstream import RecordingUpstream
from modelserve.testbed.request_path import RequestPath
from modelserve.testbed.testing_services import service_on_fresh_schema

SECRET = "request-path-tests-secret-of-at-least-32-bytes"
CHUNKS = 20
CHUNK_SECONDS = 0.15


@pytest.fixture(scope="module")
def request_path(
    crds: KubeCluster,
    operator: RunningOperator,
    kube_api: k8s.ApiClient,
    database_url: str,
    testbed_dir: Path,
) -> Iterator[RequestPath]:
    namespace = f"request-path-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    logs = testbed_dir / "logs"
    try:
        with contextlib.ExitStack() as stack:
            served_name = f"recorded-{uuid.uuid4().hex[:6]}"
            upstream = stack.enter_context(
                RecordingUpstream(served_name, chunks=CHUNKS, chunk_seconds=CHUNK_SECONDS)
            )
            serve_external(
                crds,
                build_external_server(
                    "recorded", namespace, owner="root", served_name=served_name, url=upstream.url
                ),
            )
            contract = stack.enter_context(
                service_on_fresh_schema(
                    "contract",
                    database_url,
                    logs,
                    {
                        "JWT_SECRET": SECRET,
                        "CONTRACT_INVENTORY_SECONDS": "0",
                        "CONTRACT_LOG_FORMAT": "json",
                    },
                    prefix="request_path_contract",
                )
            )
            kubeconfig = str(gateway_kubeconfig(crds))

            def start_gateway(**settings: str) -> RunningService:
                schema = stack.enter_context(fresh_schema(database_url, "request_path_gateway"))
                gateway = start_service(
                    "gateway",
                    logs,
                    {
                        "JWT_SECRET": SECRET,
                        "GATEWAY_DATABASE_URL": schema_url(database_url, schema),
                        "GATEWAY_ADMIN_USERNAME": "admin",
                        "GATEWAY_ADMIN_PASSWORD": "request-path-admin-password",
                        "GATEWAY_KUBECONFIG": kubeconfig,
                        "GATEWAY_PLATFORM_NAMESPACES": namespace,
                        "GATEWAY_CONTRACT_URL": contract.url,
                        "GATEWAY_USAGE_FLUSH_SECONDS": "0.2",
                        "GATEWAY_LOG_FORMAT": "json",
                        **settings,
                    },
                )
                stack.callback(gateway.stop)
                return gateway

            signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
            yield RequestPath(upstream, served_name, contract, signer, start_gateway)
    finally:
        core.delete_namespace(namespace)
