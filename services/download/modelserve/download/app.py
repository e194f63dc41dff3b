"""The download service's FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from modelserve.common.service import create_service_app
from modelserve.download.settings import DownloadSettings


def create_app(settings: DownloadSettings) -> FastAPI:
    return create_service_app("download", settings)
