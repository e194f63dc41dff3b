"""ModelServe's Python client: `Client` (blocking) and `AsyncClient` (asyncio) over the
gateway's API, with typed answers and one error, `ModelServeError` (docs/client.md)."""

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
from modelserve.client.sync_client import Client

__all__ = [
    "Activation",
    "ActiveModel",
    "AsyncClient",
    "ChatCompletion",
    "Client",
    "GpuStats",
    "Health",
    "HistoryEntry",
    "Info",
    "Logs",
    "ModelRecord",
    "ModelServeError",
    "PowerProfile",
    "Registration",
    "Server",
    "SystemStats",
    "Upload",
    "Version",
]
