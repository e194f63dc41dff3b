"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and
`tracestate` headers a request arrives with, the span the service opens for it, and the
`traceparent` each of its calls to another server carries.

A request's span goes into a context variable, as its id does (`request_ids`): the log
formatter reads its trace id from there, and every call the request makes (a task of the
request inherits the variable) opens a child span of it, with an id of its own. Without
an exporter (`otlp_export`) a span is its ids and nothing more: the cost of tracing is
the parse of one header and the format of one per call.

The middleware is plain ASGI, like `RequestIds`: it sits on the gateway's proxy path,
where it must cost microseconds and must not buffer a stream.
"""

from __future__ import annotations

import dataclasses
import random
import re
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_TRACEPARENT = b"traceparent"
_TRACESTATE = b"tracestate"
# The flags defined so far: `sampled` (level 1), and `random` (level 2: the trace id's
# last 7 bytes are random, as every trace id this module or OpenTelemetry's SDK makes).
SAMPLED = 0x01
RANDOM = 0x02
KNOWN_FLAGS = SAMPLED | RANDOM
# Version 00: `00-<trace id, 32 hex>-<parent id, 16 hex>-<flags, 2 hex>`, lowercase.
# A later version starts the same way and may add fields after a dash; "ff" is invalid.
_TRACEPARENT_FORM = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = b"0" * 32
_ZERO_PARENT = b"0" * 16
# A member of `tracestate`: `key=value`, the key simple (`vendor`) or multi-tenant
# (`tenant@system`), the value printable ASCII without `,` or `=`, not ending in a space.
_STATE_MEMBER = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
MAX_STATE_MEMBERS = 32


@dataclasses.dataclass(slots=True)
class TraceParent:
    """The caller's span, as its `traceparent` names it."""

    trace_id: str
    parent_id: str
    flags: int


def parse_traceparent(value: bytes) -> TraceParent | None:
    """The caller's span, or None when the header is not one the spec accepts (a new
    trace starts then, and `tracestate` is dropped with it).

    Version 00 must be exactly its 55 characters; a later version may add fields after a
    dash, which are ignored (the spec's rule for versions this code does not know)."""
    found = _TRACEPARENT_FORM.match(value)
    if found is None:
        return None
    version, trace_id, parent_id, flags = found.groups()
    if version == b"ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if len(value) != 55 and (version == b"00" or value[55:56] != b"-"):
        return None
    # Flags not defined yet are not passed on (the spec says to leave them unset).
    return TraceParent(trace_id.decode(), parent_id.decode(), int(flags, 16) & KNOWN_FLAGS)


def parse_tracestate(values: list[bytes]) -> str | None:
    """The vendors' state, all `tracestate` headers joined, when every member is well
    formed and there are at most 32 of them; otherwise None (the spec lets a vendor drop
    a state it cannot parse rather than pass it on broken). Empty members are left out."""
    members = []
    for value in values:
        for member in value.decode("latin-1").split(","):
            member = member.strip(" \t")
            if not member:
                continue
            if _STATE_MEMBER.fullmatch(member) is None:
                return None
            members.append(member)
    if not members or len(members) > MAX_STATE_MEMBERS:
        return None
    return ",".join(members)


def format_traceparent(trace_id: str, span_id: str, flags: int) -> str:
    return f"00-{trace_id}-{span_id}-{flags:02x}"


def new_trace_id() -> str:
    """128 random bits in hex, never all zeros (invalid). Python's generator, as
    OpenTelemetry's SDK uses: ids need to be unique, not secret, and it costs two thirds
    of `os.urandom`'s system call."""
    return f"{random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    """64 random bits in hex, never all zeros."""
    return f"{random.getrandbits(64) or 1:016x}"


class Span:
    """A span of this service: its ids, and those its calls carry on. This one records
    nothing (no exporter); `otlp_export.RecordedSpan` records it with OpenTelemetry's SDK."""

    __slots__ = ("flags", "span_id", "state", "trace_id")
    # Whether anything is recorded: only then is a span's name worth making.
    recording = False

    def __init__(self, trace_id: str, span_id: str, flags: int, state: str | None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.state = state

    def traceparent(self) -> str:
        """The `traceparent` that names this span as the parent of what it calls."""
        return format_traceparent(self.trace_id, self.span_id, self.flags)

    def headers(self) -> dict[str, str]:
        """The trace context headers of a call made within this span (as its parent)."""
        found = {TRACEPARENT: self.traceparent()}
        if self.state is not None:
            found[TRACESTATE] = self.state
        return found

    def child(self, method: str, url: str) -> Span:
        """A span for an HTTP call this span makes (to a model server, say): same trace,
        an id of its own, named in the call's `traceparent`."""
        return Span(self.trace_id, new_span_id(), self.flags, self.state)

    def end(self, status: int | None = None, name: str | None = None) -> None:
        """Done, with the HTTP status of its answer (None: none came), and a better name
        known only at the end (the route that matched)."""


class Tracer:
    """Opens the span of each request; this one records nothing (see `otlp_export`)."""

    def server_span(
        self, method: str, path: str, parent: TraceParent | None, state: str | None
    ) -> Span:
        """The span of a request from a caller whose span is `parent` (None: a new trace,
        sampled, so that the servers it calls may record their part, and random)."""
        if parent is None:
            return Span(new_trace_id(), new_span_id(), SAMPLED | RANDOM, None)
        return Span(parent.trace_id, new_span_id(), parent.flags, state)

    def close(self) -> None:
        """Sends what is left to send (with an exporter)."""


def open_tracer(endpoint: str | None, service: str) -> Tracer:
    """The service's tracer: recording to an OTLP/HTTP `endpoint` (a collector's base
    URL), or making ids alone without one, when OpenTelemetry's SDK is not even loaded."""
    if endpoint is None:
        return Tracer()
    from modelserve.common.otlp_export import OtlpTracer  # the SDK, only when used

    return OtlpTracer(endpoint, service)


CURRENT_SPAN: ContextVar[Span | None] = ContextVar("span", default=None)


def current_span() -> Span | None:
    return CURRENT_SPAN.get()


def call_span(method: str, url: str) -> Span | None:
    """A child span of the current request's, for an HTTP call it makes; None outside
    one (the usage outbox's deliveries, the quota ledger's periodic refresh)."""
    span = CURRENT_SPAN.get()
    return span.child(method, url) if span is not None else None


class TraceContext:
    """ASGI middleware: opens the request's span, as the child of the caller's
    `traceparent` when it is valid (a new trace otherwise), puts it in `CURRENT_SPAN`,
    and answers its `traceparent`, so that a caller that sent none learns its trace id."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parent = None
        states: list[bytes] = []
        seen = 0
        for name, value in scope["headers"]:
            if name == _TRACEPARENT:
                seen += 1
                parent = parse_traceparent(value)
            elif name == _TRACESTATE:
                states.append(value)
        if seen > 1:
            parent = None  # two parents: neither can be trusted
        state = parse_tracestate(states) if parent is not None and states else None
        span = self.tracer.server_span(scope["method"], scope["path"], parent, state)
        CURRENT_SPAN.set(span)
        header = (_TRACEPARENT, span.traceparent().encode())
        status: int | None = None

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Once: an answer passed on from another server may carry its own.
                kept = [item for item in message.get("headers", ()) if item[0] != _TRACEPARENT]
                message["headers"] = [*kept, header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        finally:
            name = None
            if span.recording:
                # The route that matched names the span (its template, not the path).
                path = getattr(scope.get("route"), "path", None)
                name = f"{scope['method']} {path}" if path else None
            span.end(status, name)
