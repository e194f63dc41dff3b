"""The job types this service runs. A job type is a room of its own (a package named for
it: `batches`, `evaluation`, …) that gives its executor (one item), its finisher (the
finished job's files and summary; the default writes `jobs/<id>/output.jsonl`) and its
routes; this module lists them, and `app.py` runs them."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import APIRouter

from modelserve.jobs.batches.executor import BatchExecutor
from modelserve.jobs.batches.finisher import finish_batch
from modelserve.jobs.batches.routes import router as batches_router
from modelserve.jobs.chat import ChatExecutor
from modelserve.jobs.datagen.routes import router as datagen_router
from modelserve.jobs.datagen.runner import SelfInstructExecutor, write_shards
from modelserve.jobs.evaluation.executor import EvalExecutor
from modelserve.jobs.evaluation.results import finish_eval
from modelserve.jobs.evaluation.routes import router as eval_router
from modelserve.jobs.executors import Executor
from modelserve.jobs.files.routes import router as files_router
from modelserve.jobs.gateway import GatewayClient
from modelserve.jobs.generation.executor import GenerateExecutor
from modelserve.jobs.generation.routes import router as generate_router
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
        JobKind("batch", BatchExecutor(gateway), finish_batch, (files_router, batches_router)),
        JobKind("eval", EvalExecutor(gateway), finish_eval, (eval_router,)),
        JobKind("generate", GenerateExecutor(gateway), routers=(generate_router,)),
        JobKind("data_gen", SelfInstructExecutor(gateway), write_shards, (datagen_router,)),
    ]


def routers() -> list[APIRouter]:
    """The routes of every job type (known before any executor is built: the app's
    routes exist before its lifespan starts)."""
    return [files_router, batches_router, eval_router, generate_router, datagen_router]
