"""The gateway's spans, exported with OpenTelemetry's SDK over OTLP/HTTP when
OTEL_EXPORTER_OTLP_ENDPOINT names a collector: the request's server span (the child of
the client's `traceparent`) and a client span for each call to the model server, whose id
is the one that call's `traceparent` carried; an unsampled trace is not recorded.

End to end: the gateway process, the operator, PostgreSQL and the contract service, the
real llama.cpp server (SmolLM2) behind a relay that remembers the headers it was sent,
and a collector on loopback that decodes what it receives with opentelemetry-proto.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from pydantic import SecretStr

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.common.trace_context import new_trace_id
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import LlmServer
from modelserve.testbed.platform import RunningOperator, RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.recording_relay import RecordingRelay
from modelserve.testbed.testing_services import service_on_fresh_schema
from modelserve.testbed.threaded_http import ThreadedApp

SECRET = "gateway-tests-secret-of-at-least-32-bytes"
PARENT = "00f067aa0ba902b7"


@dataclasses.dataclass(frozen=True)
class Exported:
    """A span as the collector received it, ids in hex."""

    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]


class Collector(ThreadedApp):
    """OTLP/HTTP with protobuf bodies on POST /v1/traces, as a collector takes it."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[Exported] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        return app

    async def _traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest.FromString(await request.read())
        for resource in message.resource_spans:
            attributes = {item.key: item.value for item in resource.resource.attributes}
            service = attributes["service.name"].string_value
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        Exported(
                            service,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            span.kind,
                            {item.key: _value(item.value) for item in span.attributes},
                        )
                    )
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    def of_trace(self, trace_id: str) -> list[Exported]:
        return [span for span in self.spans if span.trace_id == trace_id]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def token(subject: str = "alice") -> str:
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    return signer.sign(subject, teams=("nlp",))


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


@pytest.fixture(scope="module")
def relay(llm: LlmServer) -> Iterator[RecordingRelay]:
    with RecordingRelay(llm.url) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    crds: KubeCluster,
    operator: RunningOperator,
    cluster_namespace: str,
    gateway_kube: str,
    database_url: str,
    testbed_dir: Path,
    module_contract: RunningService,
    relay: RecordingRelay,
    collector: Collector,
    llm: LlmServer,
) -> Iterator[RunningService]:
    """A gateway routing SmolLM2 through the relay, exporting to the collector (in
    batches every 100 ms, the SDK's variable)."""
    body = {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": "exported", "labels": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}},
        "spec": {
            "runtime": "external",
            "model": {"servedName": llm.alias},
            "external": {"url": relay.url},
        },
    }
    crds.kubectl("apply", "-n", cluster_namespace, "-f", "-", stdin=yaml.safe_dump(body))
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "otlp-export-tests-admin-password",
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_CONTRACT_URL": module_contract.url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with service_on_fresh_schema(
        "gateway", database_url, testbed_dir / "logs", settings, prefix="gateway_otlp"
    ) as service:

        def routed() -> bool:
            return chat(service.url, llm.alias, {}).status_code == 200

        wait_for(routed, timeout=90, what="the gateway to route SmolLM2 through the relay")
        yield service


def chat(gateway: str, model: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "Say one word."}],
            "max_tokens": 4,
            **body,
        },
        headers={"Authorization": f"Bearer {token()}", **headers},
        timeout=120,
    )


def exported(
    collector: Collector, relay: RecordingRelay, trace_id: str, calls: int
) -> tuple[Exported, list[Exported]]:
    """The server span of `trace_id` and its `calls` client spans to the model server,
    once the collector has them all."""

    def arrived() -> tuple[Exported, list[Exported]] | None:
        spans = collector.of_trace(trace_id)
        servers = [span for span in spans if span.kind == SpanMessage.SPAN_KIND_SERVER]
        to_model = [
            span
            for span in spans
            if span.kind == SpanMessage.SPAN_KIND_CLIENT
            and str(span.attributes.get("url.full", "")).startswith(relay.url)
        ]
        if len(servers) == 1 and len(to_model) == calls:
            return servers[0], to_model
        return None

    return wait_for(arrived, timeout=15, what=f"the spans of trace {trace_id}")


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_the_request_and_its_call_arrive_with_the_clients_trace(
    gateway: RunningService, relay: RecordingRelay, collector: Collector, llm: LlmServer
) -> None:
    trace_id = new_trace_id()
    before = len(relay.received)
    answer = chat(gateway.url, llm.alias, {}, traceparent=f"00-{trace_id}-{PARENT}-01")
    assert answer.status_code == 200, answer.text
    server, [call] = exported(collector, relay, trace_id, 1)
    # The server span: the client's child, the one the answer names.
    assert server.service == "modelserve-gateway"
    assert server.parent_id == PARENT
    assert answer.headers["traceparent"] == f"00-{trace_id}-{server.span_id}-01"
    assert server.name == "POST /v1/chat/completions"
    assert server.attributes["http.response.status_code"] == 200
    # The call: the server span's child, the parent the model server was told of.
    [received] = relay.posted(before)
    assert call.parent_id == server.span_id
    assert received.headers["traceparent"] == f"00-{trace_id}-{call.span_id}-01"
    assert call.attributes["http.request.method"] == "POST"
    assert call.attributes["url.full"] == f"{relay.url}/chat/completions"
    assert call.attributes["http.response.status_code"] == 200


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_each_candidate_of_a_scaled_request_is_exported(
    gateway: RunningService, relay: RecordingRelay, collector: Collector, llm: LlmServer
) -> None:
    trace_id = new_trace_id()
    before = len(relay.received)
    body = {"budget": 3, "algorithm": "self-consistency"}
    answer = chat(gateway.url, llm.alias, body, traceparent=f"00-{trace_id}-{PARENT}-01")
    assert answer.status_code == 200, answer.text
    server, calls = exported(collector, relay, trace_id, 3)
    assert {call.parent_id for call in calls} == {server.span_id}
    told = {found.headers["traceparent"] for found in relay.posted(before)}
    assert told == {f"00-{trace_id}-{call.span_id}-01" for call in calls}


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_a_new_trace_is_exported_and_an_unsampled_one_is_not(
    gateway: RunningService, relay: RecordingRelay, collector: Collector, llm: LlmServer
) -> None:
    unsampled = new_trace_id()
    before = len(relay.received)
    quiet = chat(gateway.url, llm.alias, {}, traceparent=f"00-{unsampled}-{PARENT}-00")
    assert quiet.status_code == 200, quiet.text
    assert quiet.headers["traceparent"].startswith(f"00-{unsampled}-")
    assert quiet.headers["traceparent"].endswith("-00")
    [received] = relay.posted(before)
    assert received.headers["traceparent"].startswith(f"00-{unsampled}-")
    # A request with no traceparent: a new trace, sampled and random (level 2's flag,
    # which the SDK sets), recorded as a root span.
    fresh = chat(gateway.url, llm.alias, {})
    assert fresh.status_code == 200, fresh.text
    _, trace_id, span_id, flags = fresh.headers["traceparent"].split("-")
    assert flags == "03"
    server, _ = exported(collector, relay, trace_id, 1)
    assert server.span_id == span_id and server.parent_id == ""
    # Exported after the unsampled request ended, in order: that one had nothing to send.
    assert collector.of_trace(unsampled) == []
