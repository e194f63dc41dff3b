"""A service's spans are its own (TraceContext): FastAPI's native OpenTelemetry spans stay
off even when the process has a global tracer provider, which would otherwise give every
request a second server span (and cost a look at the environment on every request)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Run apart: a global tracer provider can be set once per process.
SCRIPT = textwrap.dedent(
    """
    import asyncio

    import httpx
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from modelserve.common.service import create_service_app
    from modelserve.common.settings import ServiceSettings

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    app = create_service_app("probe", ServiceSettings(port=1))

    async def ask() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as http:
            return (await http.get("/health")).status_code

    print(asyncio.run(ask()), len(exporter.get_finished_spans()))
    """
)


def test_fastapi_makes_no_spans_of_its_own() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["200", "0"], done.stderr
