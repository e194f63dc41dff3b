"""`modelserve-gateway`: run the gateway service."""

from __future__ import annotations

from modelserve.common.service import serve
from modelserve.gateway.app import create_app
from modelserve.gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    serve(create_app(settings), settings)
