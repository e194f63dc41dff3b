"""ModelServe's Python client: `Client` (blocking) and `AsyncClient` (asyncio) over the
gateway's API, jobs included (evaluation, data generation, queued generation and
`wait_for_job`), with typed answers and one error, `ModelServeError` (docs/client.md)."""

from modelserve.client.answers import (
    Activation,
    ActiveModel,
    ChatCompletion,
    GpuStats,
    Health,
    HistoryEntry,
    Info,
    Logs,
    ModelRecord,
    PowerProfile,
    Registration,
    Server,
    SystemStats,
    Upload,
    Version,
)
from modelserve.client.async_client import AsyncClient
from modelserve.client.errors import ModelServeError
from modelserve.client.jobs.answers import (
    DataGenJob,
    EvalExample,
    EvalExamples,
    EvalJob,
    EvalResult,
    GeneratedText,
    Generation,
    Job,
    JobProgress,
    JobStats,
    Shard,
)
from modelserve.client.sync_client import Client

__all__ = [
    "Activation",
    "ActiveModel",
    "AsyncClient",
    "ChatCompletion",
    "Client",
    "DataGenJob",
    "EvalExample",
    "EvalExamples",
    "EvalJob",
    "EvalResult",
    "GeneratedText",
    "Generation",
    "GpuStats",
    "Health",
    "HistoryEntry",
    "Info",
    "Job",
    "JobProgress",
    "JobStats",
    "Logs",
    "ModelRecord",
    "ModelServeError",
    "PowerProfile",
    "Registration",
    "Server",
    "Shard",
    "SystemStats",
    "Upload",
    "Version",
]
