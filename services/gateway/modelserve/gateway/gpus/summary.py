"""The `gpu` object of GET /health: cheap (what it reads is cached, see `cluster`) and
never an error (a probe must not fail because the API server is slow)."""

from __future__ import annotations

import logging
import time
from typing import Any

from modelserve.gateway.gpus.cluster import ClusterUnreadable, GpuCluster
from modelserve.gateway.gpus.inventory import gpu_summary

logger = logging.getLogger(__name__)


def unknown_gpus(why: str) -> dict[str, Any]:
    """The summary where the cluster's GPUs are not known (`available` is null)."""
    return {
        "available": None,
        "device_count": None,
        "device_name": None,
        "device_names": [],
        "memory_allocated_gb": None,
        "memory_reserved_gb": None,
        "memory_total_gb": None,
        "live_gpus": 0,
        "unavailable": why,
    }


async def health_gpu(cluster: GpuCluster | None) -> dict[str, Any]:
    if cluster is None:
        return unknown_gpus("this gateway is not connected to a cluster")
    try:
        found = await cluster.nodes_and_reports()
    except ClusterUnreadable as error:
        logger.warning("/health: %s", error)
        return unknown_gpus(str(error))
    return gpu_summary(found.nodes, found.reports, time.time())
