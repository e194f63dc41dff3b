"""Spans recorded with OpenTelemetry's SDK and sent over OTLP/HTTP (protobuf) to a
collector, for a service whose settings name one. Imported only then: without an
endpoint no part of the SDK is loaded, and `trace_context.Tracer` makes the ids alone.

The SDK makes the ids here (its sampler follows the caller's `sampled` flag: a span of
an unsampled trace is not recorded, and its calls say so), spans go out in batches from
the SDK's own thread, and `close` sends what is left at shutdown. No global tracer
provider is set: the spans of this module are the only ones the service records.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from modelserve.common.trace_context import Span, TraceParent, Tracer

# Appended to the endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT's specification says for traces.
TRACES_PATH = "/v1/traces"


class RecordedSpan(Span):
    """A span whose ids and times the SDK records."""

    __slots__ = ("_recorded", "_tracer")
    recording = True

    def __init__(self, recorded: trace.Span, tracer: trace.Tracer, state: str | None) -> None:
        context = recorded.get_span_context()
        super().__init__(
            format(context.trace_id, "032x"),
            format(context.span_id, "016x"),
            int(context.trace_flags),
            state,
        )
        self._recorded = recorded
        self._tracer = tracer

    def child(self, method: str, url: str) -> Span:
        recorded = self._tracer.start_span(
            method,
            context=trace.set_span_in_context(self._recorded, Context()),
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": method, "url.full": url},
        )
        return RecordedSpan(recorded, self._tracer, self.state)

    def end(self, status: int | None = None, name: str | None = None) -> None:
        recorded = self._recorded
        if name is not None:
            recorded.update_name(name)
        if status is None:
            recorded.set_status(Status(StatusCode.ERROR, "no answer"))
        else:
            recorded.set_attribute("http.response.status_code", status)
            if status >= 500:
                recorded.set_status(Status(StatusCode.ERROR))
        recorded.end()


class OtlpTracer(Tracer):
    """Records every request's span, and its calls', and sends them to `endpoint`."""

    def __init__(self, endpoint: str, service: str) -> None:
        # The exporter reads its other settings from the standard variables itself
        # (OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT, ...), the batching
        # processor its own (OTEL_BSP_SCHEDULE_DELAY, ...).
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + TRACES_PATH)
        self._provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("modelserve")

    def server_span(
        self, method: str, path: str, parent: TraceParent | None, state: str | None
    ) -> Span:
        if parent is None:
            context = Context()  # a new trace
        else:
            remote = trace.SpanContext(
                int(parent.trace_id, 16),
                int(parent.parent_id, 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(parent.flags),
                trace_state=trace.TraceState.from_header([state]) if state else None,
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(remote), Context())
        recorded = self._tracer.start_span(
            method,
            context=context,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        return RecordedSpan(recorded, self._tracer, state)

    def close(self) -> None:
        self._provider.shutdown()
