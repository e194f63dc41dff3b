"""Dependency aliases of the download service's routes."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Request

from modelserve.common.objects import ObjectStore
from modelserve.download.jobs import Jobs
from modelserve.download.metrics import DownloadMetrics
from modelserve.download.presigning import Presigner
from modelserve.download.registry import Registry
from modelserve.download.settings import DownloadSettings
from modelserve.download.versions import Versions


async def _jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


async def _settings(request: Request) -> DownloadSettings:
    settings: DownloadSettings = request.app.state.settings
    return settings


async def _http(request: Request) -> httpx.AsyncClient:
    http: httpx.AsyncClient = request.app.state.http
    return http


async def _metrics(request: Request) -> DownloadMetrics:
    metrics: DownloadMetrics = request.app.state.metrics
    return metrics


JobsDep = Annotated[Jobs, Depends(_jobs)]
MetricsDep = Annotated[DownloadMetrics, Depends(_metrics)]
SettingsDep = Annotated[DownloadSettings, Depends(_settings)]
HttpDep = Annotated[httpx.AsyncClient, Depends(_http)]


async def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


async def _versions(request: Request) -> Versions:
    versions: Versions = request.app.state.versions
    return versions


async def _platform(request: Request) -> ObjectStore:
    platform: ObjectStore = request.app.state.platform
    return platform


async def _presigner(request: Request) -> Presigner:
    presigner: Presigner = request.app.state.presigner
    return presigner


# Registrations, uploads and listings; active versions and their history.
RegistryDep = Annotated[Registry, Depends(_registry)]
VersionsDep = Annotated[Versions, Depends(_versions)]
# The platform store (blocking calls: run them in a thread), and upload URL signing.
PlatformDep = Annotated[ObjectStore, Depends(_platform)]
PresignerDep = Annotated[Presigner, Depends(_presigner)]
