"""GET /metrics: the gateway's Prometheus metrics.

Without a token by default, as Prometheus scrapes in a cluster; the per-user token
counts name users, so keep /metrics off the public ingress, or set
GATEWAY_METRICS_TOKEN and give Prometheus that bearer token (`authorization` in its
scrape config).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from modelserve.common.service_metrics import metrics_answer
from modelserve.gateway.deps import MetricsDep, SettingsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, metrics: MetricsDep, settings: SettingsDep) -> Response:
    return metrics_answer(request, metrics.registry, settings.metrics_token)
