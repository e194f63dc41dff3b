"""`modelserve-contract`: the API on CONTRACT_PORT, the admission webhook over TLS."""

from __future__ import annotations

import asyncio

import uvicorn

from modelserve.contract.app import create_app
from modelserve.contract.settings import ContractSettings


def main() -> None:
    settings = ContractSettings()
    app = create_app(settings)
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app, host=settings.host, port=settings.port, log_level=settings.log_level
            )
        )
    ]
    if settings.tls_cert_file and settings.tls_key_file:
        # The same app over HTTPS for the API server; the first server runs the lifespan.
        servers.append(
            uvicorn.Server(
                uvicorn.Config(
                    app,
                    host=settings.host,
                    port=settings.webhook_port,
                    log_level=settings.log_level,
                    ssl_certfile=settings.tls_cert_file,
                    ssl_keyfile=settings.tls_key_file,
                    lifespan="off",
                )
            )
        )

    async def run() -> None:
        await asyncio.gather(*(server.serve() for server in servers))

    asyncio.run(run())
