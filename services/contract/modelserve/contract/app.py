"""The contract service's FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from modelserve.common.service import create_service_app
from modelserve.contract.settings import ContractSettings


def create_app(settings: ContractSettings) -> FastAPI:
    return create_service_app("contract", settings)
