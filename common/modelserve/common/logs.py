"""How every service logs: one handler on the root logger, in text for people (`make dev`)
or in JSON, one object per line, for a log pipeline (the chart). uvicorn's own loggers,
the access log among them, go through the same handler (uvicorn is given no logging
configuration of its own), so that every line carries the request's id, and in a
service that traces its requests (`trace_context`: the gateway) their trace and span ids.

    {"time": "2026-12-06T10:01:02.345Z", "level": "INFO", "logger": "uvicorn.access",
     "message": "127.0.0.1:50412 - \\"GET /health HTTP/1.1\\" 200", "service": "gateway",
     "request_id": "4b1f…", "trace_id": "0af7…", "span_id": "b7ad…",
     "exception": "Traceback …"}
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Literal

from modelserve.common.request_ids import current_request_id
from modelserve.common.trace_context import current_span

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(trace_id)s]: %(message)s"


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        time = dt.datetime.fromtimestamp(record.created, dt.UTC)
        entry: dict[str, object] = {
            "time": time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
            "request_id": current_request_id(),
        }
        span = current_span()
        entry["trace_id"] = span.trace_id if span is not None else None
        entry["span_id"] = span.span_id if span is not None else None
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class _WithRequestId(logging.Filter):
    """Gives text records a `request_id` and a `trace_id` field ("-" outside a request,
    or a service that does not trace)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        span = current_span()
        record.trace_id = span.trace_id if span is not None else "-"
        return True


def log_handler(service: str, log_format: LogFormat) -> logging.Handler:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.addFilter(_WithRequestId())
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(service: str, level: str, log_format: LogFormat) -> None:
    """The root logger, at `level`, writing through the one handler (any other replaced)."""
    handler = log_handler(service, log_format)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
