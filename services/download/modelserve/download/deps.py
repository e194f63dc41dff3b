"""Dependency aliases of the download service's routes."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Request

from modelserve.download.jobs import Jobs
from modelserve.download.settings import DownloadSettings


async def _jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


async def _settings(request: Request) -> DownloadSettings:
    settings: DownloadSettings = request.app.state.settings
    return settings


async def _http(request: Request) -> httpx.AsyncClient:
    http: httpx.AsyncClient = request.app.state.http
    return http


JobsDep = Annotated[Jobs, Depends(_jobs)]
SettingsDep = Annotated[DownloadSettings, Depends(_settings)]
HttpDep = Annotated[httpx.AsyncClient, Depends(_http)]
