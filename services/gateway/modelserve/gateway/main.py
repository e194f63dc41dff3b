"""`modelserve-gateway`: run the gateway service, in one process or, with GATEWAY_WORKERS,
in several worker processes on one port."""

from __future__ import annotations

import os
import sys

from fastapi import FastAPI
from pydantic import ValidationError

from modelserve.common.service import configure_logging, serve, serve_workers
from modelserve.gateway.app import create_app
from modelserve.gateway.settings import GatewaySettings

# Each worker process builds its app with this (uvicorn imports it by name).
WORKER_FACTORY = "modelserve.gateway.main:worker_app"


def load_settings() -> GatewaySettings:
    try:
        return GatewaySettings()
    except ValidationError as error:
        # A configuration mistake (a development or short JWT_SECRET, say): its message,
        # not a traceback.
        problems = "\n".join(
            f"  {'.'.join(map(str, problem['loc'])) or error.title}: {problem['msg']}"
            for problem in error.errors()
        )
        sys.exit(f"modelserve-gateway: invalid settings:\n{problems}")


def worker_settings(settings: GatewaySettings, pid: int) -> GatewaySettings:
    """The settings of one of several workers. Each reports its load in a Lease of its
    own (the operator adds the reports up): a GATEWAY_REPLICA_ID that the workers share
    (the chart sets the pod's name) gets the worker's process id, so that no two write
    the same Lease. Without one, each worker's default id has its process id already."""
    if settings.replica_id is None:
        return settings
    # The id's pattern allows 200 characters: room for "-" and a process id is kept.
    replica = f"{settings.replica_id[:189]}-{pid}"
    return settings.model_copy(update={"replica_id": replica})


def worker_app() -> FastAPI:
    """One worker's gateway: the settings read from the same environment (the parent
    checked them before starting any worker), its logging, its app."""
    settings = worker_settings(load_settings(), os.getpid())
    configure_logging(settings, "gateway")
    return create_app(settings)


def main() -> None:
    settings = load_settings()
    if settings.workers == 1:
        serve(create_app(settings), settings)
    else:
        serve_workers(WORKER_FACTORY, settings, "gateway", settings.workers)
