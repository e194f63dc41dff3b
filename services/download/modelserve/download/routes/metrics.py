"""GET /metrics: the download service's Prometheus metrics (modelserve.common.service_metrics
says who may read them)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from modelserve.common.service_metrics import metrics_answer
from modelserve.download.deps import MetricsDep, SettingsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, metrics: MetricsDep, settings: SettingsDep) -> Response:
    return metrics_answer(request, metrics.registry, settings.metrics_token)
