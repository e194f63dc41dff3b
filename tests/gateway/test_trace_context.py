"""W3C trace context through the gateway: the client's `traceparent` (and `tracestate`)
is carried to the model server on every call the request makes, plain, streamed and
each candidate of a scaled one, each call a child span of the gateway's; an invalid one
starts a new trace; the answer names the gateway's span; the logs carry the trace id.

The pure parse and format functions first; then end to end: the gateway process, the
operator, PostgreSQL and the contract service, with the real llama.cpp server (SmolLM2)
behind a relay on loopback that remembers the headers it was sent.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from modelserve.common.logs import log_handler
from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.common.trace_context import (
    CURRENT_SPAN,
    Span,
    TraceParent,
    Tracer,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    parse_tracestate,
)
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import LlmServer
from modelserve.testbed.platform import RunningOperator, RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.recording_relay import RecordingRelay
from modelserve.testbed.testing_services import service_on_fresh_schema

SECRET = "gateway-tests-secret-of-at-least-32-bytes"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT_FORM = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-(0[0-3])")


# --- the headers, as pure functions ------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{PARENT}-01", TraceParent(TRACE, PARENT, 1)),
        (f"00-{TRACE}-{PARENT}-00", TraceParent(TRACE, PARENT, 0)),
        # `random` (level 2) is kept; flags not defined yet are not passed on.
        (f"00-{TRACE}-{PARENT}-03", TraceParent(TRACE, PARENT, 3)),
        (f"00-{TRACE}-{PARENT}-fd", TraceParent(TRACE, PARENT, 1)),
        (f"00-{TRACE}-{PARENT}-fe", TraceParent(TRACE, PARENT, 2)),
        # A later version: its first four fields, what follows a dash ignored.
        (f"01-{TRACE}-{PARENT}-01", TraceParent(TRACE, PARENT, 1)),
        (f"cc-{TRACE}-{PARENT}-01-what-comes-later", TraceParent(TRACE, PARENT, 1)),
    ],
)
def test_a_valid_traceparent_is_read(header: str, expected: TraceParent) -> None:
    assert parse_traceparent(header.encode()) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{PARENT}-01",  # version ff is invalid
        f"00-{TRACE.upper()}-{PARENT}-01",  # uppercase
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE}-{PARENT}-01 ",
        f"01-{TRACE}-{PARENT}-01extra",  # a later version's extra field follows a dash
        f"00-{TRACE[:-1]}-{PARENT}-01",
        f"00-{TRACE}-{PARENT[:-1]}-01",
        f"00-{TRACE}-{PARENT}-1",
        f"00_{TRACE}_{PARENT}_01",
        f"0g-{TRACE}-{PARENT}-01",
    ],
)
def test_an_invalid_traceparent_is_refused(header: str) -> None:
    assert parse_traceparent(header.encode()) is None


def test_format_and_parse_are_inverse() -> None:
    trace_id, span_id = new_trace_id(), new_span_id()
    header = format_traceparent(trace_id, span_id, 1)
    assert TRACEPARENT_FORM.fullmatch(header)
    assert parse_traceparent(header.encode()) == TraceParent(trace_id, span_id, 1)
    assert new_trace_id() != trace_id and new_span_id() != span_id


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([b"congo=t61rcWkgMzE"], "congo=t61rcWkgMzE"),
        ([b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        # Several headers are one list; spaces and empty members go.
        ([b"rojo=1 , ", b" congo=2"], "rojo=1,congo=2"),
        ([b"tenant1@vendor=x"], "tenant1@vendor=x"),
        ([b""], None),
        ([b"no value"], None),
        ([b"Upper=1"], None),
        ([b"a=1,b"], None),
        ([b",".join(b"k%d=v" % index for index in range(33))], None),  # over 32 members
    ],
)
def test_tracestate(values: list[bytes], expected: str | None) -> None:
    assert parse_tracestate(values) == expected


def test_the_plain_tracer_continues_the_callers_trace() -> None:
    tracer = Tracer()
    span = tracer.server_span("POST", "/v1/chat/completions", TraceParent(TRACE, PARENT, 0), "a=1")
    assert span.trace_id == TRACE and span.span_id != PARENT and span.flags == 0
    child = span.child("POST", "http://model-server/v1/chat/completions")
    assert child.headers() == {
        "traceparent": f"00-{TRACE}-{child.span_id}-00",
        "tracestate": "a=1",
    }
    assert child.span_id != span.span_id
    fresh = tracer.server_span("POST", "/", None, None)
    # A new trace: sampled, and its id random.
    assert fresh.trace_id != TRACE and fresh.flags == 3 and "tracestate" not in fresh.headers()


def test_log_lines_carry_the_trace_of_the_current_span() -> None:
    record = logging.LogRecord("gateway", logging.INFO, __file__, 1, "answered", None, None)
    json_format, text = log_handler("gateway", "json"), log_handler("gateway", "text")

    def lines() -> tuple[dict[str, Any], str]:
        text.filter(record)
        return json.loads(json_format.format(record)), text.format(record)

    outside, outside_text = contextvars.Context().run(lines)
    assert outside["trace_id"] is None and outside["span_id"] is None
    assert "[- -]: answered" in outside_text

    def within() -> tuple[dict[str, Any], str]:
        CURRENT_SPAN.set(Span(TRACE, PARENT, 1, None))
        return lines()

    inside, inside_text = contextvars.Context().run(within)
    assert (inside["trace_id"], inside["span_id"]) == (TRACE, PARENT)
    assert f"[- {TRACE}]: answered" in inside_text


# --- end to end --------------------------------------------------------------------------


def token(subject: str = "alice") -> str:
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    return signer.sign(subject, teams=("nlp",))


def modelserve(name: str, url: str, served: str) -> dict[str, Any]:
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}},
        "spec": {"runtime": "external", "model": {"servedName": served}, "external": {"url": url}},
    }


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
    llm: LlmServer,
) -> Iterator[RunningService]:
    """A gateway (logging in JSON) routing SmolLM2 through the relay."""
    body = modelserve("traced", relay.url, llm.alias)
    crds.kubectl("apply", "-n", cluster_namespace, "-f", "-", stdin=yaml.safe_dump(body))
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "trace-context-tests-admin-password",
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_CONTRACT_URL": module_contract.url,
        "GATEWAY_LOG_FORMAT": "json",
    }
    with service_on_fresh_schema(
        "gateway", database_url, testbed_dir / "logs", settings, prefix="gateway_traced"
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


def ids(header: str) -> tuple[str, str, str]:
    found = TRACEPARENT_FORM.fullmatch(header)
    assert found is not None, header
    trace_id, span_id, flags = found.groups()
    return trace_id, span_id, flags


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_a_plain_request_carries_the_callers_trace(
    gateway: RunningService, relay: RecordingRelay, llm: LlmServer
) -> None:
    before = len(relay.received)
    answer = chat(
        gateway.url,
        llm.alias,
        {},
        traceparent=f"00-{TRACE}-{PARENT}-01",
        tracestate="rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    )
    assert answer.status_code == 200, answer.text
    # The answer names the gateway's span, a child of the client's.
    trace_id, gateway_span, flags = ids(answer.headers["traceparent"])
    assert (trace_id, flags) == (TRACE, "01")
    assert gateway_span != PARENT
    # The model server got the trace, as a child of the gateway's span, and its state.
    [received] = relay.posted(before)
    trace_id, call_span, flags = ids(received.headers["traceparent"])
    assert (trace_id, flags) == (TRACE, "01")
    assert call_span not in (PARENT, gateway_span)
    assert received.headers["tracestate"] == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_a_stream_carries_the_trace_and_an_unsampled_flag(
    gateway: RunningService, relay: RecordingRelay, llm: LlmServer
) -> None:
    before = len(relay.received)
    body = {
        "model": llm.alias,
        "messages": [{"role": "user", "content": "Say one word."}],
        "max_tokens": 4,
        "stream": True,
    }
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {token()}", "traceparent": f"00-{TRACE}-{PARENT}-00"},
        timeout=120,
    ) as answer:
        assert answer.status_code == 200
        assert ids(answer.headers["traceparent"])[::2] == (TRACE, "00")
        lines = [line for line in answer.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    [received] = relay.posted(before)
    assert ids(received.headers["traceparent"])[::2] == (TRACE, "00")
    assert "tracestate" not in received.headers


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_each_candidate_of_a_scaled_request_is_a_span_of_the_trace(
    gateway: RunningService, relay: RecordingRelay, llm: LlmServer
) -> None:
    before = len(relay.received)
    body = {"budget": 3, "algorithm": "self-consistency", "scaling_trace": True}
    answer = chat(gateway.url, llm.alias, body, traceparent=f"00-{TRACE}-{PARENT}-01")
    assert answer.status_code == 200, answer.text
    assert answer.json()["scaling"]["budget"] == 3
    gateway_span = ids(answer.headers["traceparent"])[1]
    calls = [ids(found.headers["traceparent"]) for found in relay.posted(before)]
    assert len(calls) == 3
    assert {trace_id for trace_id, _, _ in calls} == {TRACE}
    spans = {span for _, span, _ in calls}
    assert len(spans) == 3 and not spans & {PARENT, gateway_span}


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_each_prompt_of_a_list_is_a_span_of_the_trace(
    gateway: RunningService, relay: RecordingRelay, llm: LlmServer
) -> None:
    # llama.cpp's server takes one prompt a request: the gateway sends one per prompt.
    before = len(relay.received)
    answer = httpx.post(
        f"{gateway.url}/v1/completions",
        json={"model": llm.alias, "prompt": ["One", "Two"], "max_tokens": 2},
        headers={"Authorization": f"Bearer {token()}", "traceparent": f"00-{TRACE}-{PARENT}-01"},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["choices"]) == 2
    gateway_span = ids(answer.headers["traceparent"])[1]
    calls = [ids(found.headers["traceparent"]) for found in relay.posted(before)]
    assert [trace_id for trace_id, _, _ in calls] == [TRACE, TRACE]
    spans = {span for _, span, _ in calls}
    assert len(spans) == 2 and gateway_span not in spans


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
@pytest.mark.parametrize(
    "header",
    [
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE.upper()}-{PARENT}-01",
        f"ff-{TRACE}-{PARENT}-01",
        "not a traceparent",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(
    gateway: RunningService, relay: RecordingRelay, llm: LlmServer, header: str
) -> None:
    before = len(relay.received)
    answer = chat(gateway.url, llm.alias, {}, traceparent=header, tracestate="rojo=1")
    assert answer.status_code == 200, answer.text
    trace_id, _, flags = ids(answer.headers["traceparent"])
    assert trace_id not in (TRACE, TRACE.upper(), "0" * 32) and flags == "03"
    [received] = relay.posted(before)
    assert ids(received.headers["traceparent"])[0] == trace_id
    # The state of a trace that was not taken up is not passed on.
    assert "tracestate" not in received.headers


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_without_a_traceparent_the_answer_names_a_new_trace(
    gateway: RunningService, relay: RecordingRelay, llm: LlmServer
) -> None:
    before = len(relay.received)
    first = chat(gateway.url, llm.alias, {})
    second = chat(gateway.url, llm.alias, {})
    assert first.status_code == second.status_code == 200
    traces = [ids(answer.headers["traceparent"])[0] for answer in (first, second)]
    assert traces[0] != traces[1]
    sent = [ids(found.headers["traceparent"])[0] for found in relay.posted(before)]
    assert sent == traces
    # Answers of the gateway's own routes carry it too.
    health = httpx.get(f"{gateway.url}/health", headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
    assert ids(health.headers["traceparent"])[0] == TRACE


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_the_logs_of_a_request_carry_its_trace_id(
    gateway: RunningService, testbed_dir: Path, llm: LlmServer
) -> None:
    trace_id = new_trace_id()
    answer = chat(gateway.url, llm.alias, {}, traceparent=f"00-{trace_id}-{PARENT}-01")
    assert answer.status_code == 200, answer.text
    gateway_span = ids(answer.headers["traceparent"])[1]
    port = gateway.url.rpartition(":")[2]
    log = testbed_dir / "logs" / f"gateway-{port}.log"

    def logged() -> list[dict[str, Any]] | None:
        lines = [line for line in log.read_text().splitlines() if trace_id in line]
        return [json.loads(line) for line in lines] or None

    entries = wait_for(logged, timeout=10, what="the request's access log line")
    access = [entry for entry in entries if entry["logger"] == "uvicorn.access"]
    assert access and "POST /v1/chat/completions" in access[0]["message"]
    assert all(entry["trace_id"] == trace_id for entry in entries)
    assert access[0]["span_id"] == gateway_span
