"""What the services' /metrics share: the time each request takes, by route template (the
contract and download services), and the answer to GET /metrics with its token rule (the
gateway's too).

Without a token /metrics is open, as Prometheus scrapes in a cluster, and the service's
NetworkPolicy decides who reaches it; with one (`<SERVICE>_METRICS_TOKEN`), GET /metrics
needs `Authorization: Bearer <it>` and answers 401 without.
"""

from __future__ import annotations

import hmac
import time

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.common.errors import ApiError

# API calls between services: milliseconds, up to the database's timeout and a bit.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def request_histogram(service: str, registry: CollectorRegistry) -> Histogram:
    return Histogram(
        f"modelserve_{service}_request_duration_seconds",
        "Time from a request's arrival to the end of its answer, by method, route template "
        "(`other` where no route matched) and status.",
        ["method", "route", "status"],
        buckets=REQUEST_BUCKETS,
        registry=registry,
    )


class RequestTimer:
    """ASGI middleware: each HTTP request into `histogram`, labelled by its route template
    (`/models/{model_id}`, never the path itself: ids would make a series each)."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that no handler turned into an answer

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            # The router leaves the matched route in the scope.
            route = str(getattr(scope.get("route"), "path_format", "") or "other")
            self.histogram.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )


def metrics_answer(
    request: Request, registry: CollectorRegistry, token: SecretStr | None
) -> Response:
    """The registry in Prometheus's text format, if the caller shows `token` (when set)."""
    if token is not None:
        expected = f"Bearer {token.get_secret_value()}"
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "token_invalid", "/metrics needs the metrics token")
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
