"""`modelserve-contract`: the API on CONTRACT_PORT, the admission webhook over TLS."""

from __future__ import annotations

import uvicorn

from modelserve.common.service import configure_logging, serve_all
from modelserve.contract.app import create_app
from modelserve.contract.settings import ContractSettings


def main() -> None:
    settings = ContractSettings()
    configure_logging(settings)
    app = create_app(settings)
    configs = [
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    ]
    if settings.tls_cert_file and settings.tls_key_file:
        # The same app over HTTPS, for the API server; the first server runs the lifespan.
        configs.append(
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
    serve_all(configs)
