"""What GET /info and GET /version answer (pure): the facts a caller scripts against."""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping
from typing import Any

from modelserve.common import __version__
from modelserve.common.modelserve import (
    SERVER_CONTAINER,
    SERVER_LABEL,
    Aggregation,
    Algorithm,
    RewardKind,
)
from modelserve.common.settings import split
from modelserve.gateway.scaling_requests import MAX_BUDGET
from modelserve.gateway.settings import GatewaySettings

# The version of the gateway's REST API (the seeds' routes and shapes).
API_VERSION = "1.0.0"
UNAVAILABLE = "unavailable"
# What the operator's model-server Deployments carry (operator/modelserve/operator/builders.py).
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
OPERATOR = "modelserve-operator"
RUNTIME_LABEL = "llm.modelserve.io/runtime"


def build_info(settings: GatewaySettings, *, cluster: bool) -> dict[str, Any]:
    """The gateway's settings that change what a caller may send or should expect."""
    tokens = settings.tokens
    watched = split(settings.watch_namespaces)
    return {
        "api_version": API_VERSION,
        "service": "gateway",
        "platform_version": __version__,
        "auth": {
            # A platform JWT (POST /auth/token) or an API key (msk_…), as a Bearer token.
            "modes": ["jwt", "api_key"],
            "token_algorithm": tokens.algorithm,
            "token_expiry_minutes": tokens.expiry_minutes,
            "sign_in": "POST /auth/token",
            "sign_in_window_seconds": settings.sign_in_window_seconds,
            "sign_in_failures_per_user": settings.sign_in_failures_per_user,
            "sign_in_failures_per_address": settings.sign_in_failures_per_address,
            "metrics_token_required": settings.metrics_token is not None,
        },
        "cluster": {
            "connected": cluster,
            "default_namespace": settings.namespace,
            "watch_namespaces": "*" if "*" in watched else sorted({*watched, settings.namespace}),
            "platform_namespaces": split(settings.platform_namespaces),
            "ingress_url": settings.ingress_url,
        },
        "services": {
            "contract": settings.contract_url is not None,
            "download": settings.download_url is not None,
            "jobs": settings.jobs_url is not None,
        },
        "limits": {
            "max_body_bytes": settings.max_body_bytes,
            "upstream_connect_timeout_seconds": settings.upstream_connect_timeout,
            "upstream_read_timeout_seconds": settings.upstream_read_timeout,
            "contract_timeout_seconds": settings.contract_timeout,
        },
        "dynamic_loading": {
            "hold_queue": settings.hold_queue,
            "hold_timeout_seconds": settings.hold_timeout_seconds,
            "hold_keepalive_seconds": settings.hold_keepalive_seconds,
        },
        "scaling": {
            "algorithms": [algorithm.value for algorithm in Algorithm],
            "rewards": [reward.value for reward in RewardKind],
            "aggregations": [aggregation.value for aggregation in Aggregation],
            "max_budget": MAX_BUDGET,
            "concurrency": settings.scaling_concurrency,
        },
    }


def server_of(deployment: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, ModelServe name) of one of the operator's Deployments."""
    metadata = deployment["metadata"]
    return metadata.get("namespace", ""), (metadata.get("labels") or {}).get(SERVER_LABEL, "")


def runtime_images(deployments: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The images the `server` containers of the operator's Deployments run: each image
    once, with its runtime and how many Deployments run it (no names: they are tenants')."""
    counts: dict[tuple[str, str], int] = {}
    for deployment in deployments:
        labels = deployment["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != OPERATOR:
            continue
        template = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in template.get("containers") or []:
            if container.get("name") == SERVER_CONTAINER and container.get("image"):
                key = (container["image"], labels.get(RUNTIME_LABEL, ""))
                counts[key] = counts.get(key, 0) + 1
    return [
        {"image": image, "runtime": runtime or None, "deployments": count}
        for (image, runtime), count in sorted(counts.items())
    ]


def build_version(
    *,
    kubernetes_version: str | None,
    images: list[dict[str, Any]] | None,
    unavailable: Mapping[str, str],
) -> dict[str, Any]:
    """The seed's /version for the platform; what could not be read is "unavailable", and
    `unavailable` says why, per field."""
    return {
        "api_version": API_VERSION,
        "platform_version": __version__,
        "python_version": platform.python_version(),
        "kubernetes_version": kubernetes_version or UNAVAILABLE,
        "runtime_images": images if images is not None else UNAVAILABLE,
        "unavailable": dict(unavailable),
    }
