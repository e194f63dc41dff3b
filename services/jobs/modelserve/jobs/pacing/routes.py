"""GET /metrics: the engine's per-model concurrency (`modelserve_jobs_model_concurrency`)
and cap, for Prometheus. No token: it names models and numbers, nobody's data."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelserve.jobs.pacing.pacer import Pacer

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    pacer: Pacer = request.app.state.pacer
    pacer.limits()  # the gauges as they are now
    return Response(generate_latest(pacer.registry), media_type=CONTENT_TYPE_LATEST)
