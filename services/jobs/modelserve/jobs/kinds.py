"""The job types this service runs. A job type is a room of its own (a package named for
it: `batches`, `evaluation`, …) that gives its executor (one item), its finisher (the
finished job's files and summary; the default writes `jobs/<id>/output.jsonl`) and its
routes; this module lists them, and `app.py` runs them."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import APIRouter

from modelserve.jobs.chat import ChatExecutor
from modelserve.jobs.executors import Executor
from modelserve.jobs.gateway import GatewayClient
from modelserve.jobs.outputs import Finisher


@dataclass(frozen=True)
class JobKind:
    name: str
    executor: Executor
    finisher: Finisher | None = None
    routers: tuple[APIRouter, ...] = field(default_factory=tuple)


def job_kinds(gateway: GatewayClient) -> list[JobKind]:
    """Every job type, its items run through `gateway` as their owner."""
    return [
        JobKind("chat", ChatExecutor(gateway)),
    ]


def routers() -> list[APIRouter]:
    """The routes of every job type (known before any executor is built: the app's
    routes exist before its lifespan starts)."""
    return []
