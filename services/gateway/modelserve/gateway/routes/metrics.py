"""GET /metrics: the gateway's Prometheus metrics.

Without a token by default, as Prometheus scrapes in a cluster; the per-user token
counts name users, so keep /metrics off the public ingress, or set
GATEWAY_METRICS_TOKEN and give Prometheus that bearer token (`authorization` in its
scrape config).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelserve.common.errors import ApiError
from modelserve.gateway.deps import MetricsDep, SettingsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, metrics: MetricsDep, settings: SettingsDep) -> Response:
    if settings.metrics_token is not None:
        expected = f"Bearer {settings.metrics_token.get_secret_value()}"
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "token_invalid", "/metrics needs the metrics token")
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
