"""`modelserve-contract`: the API on CONTRACT_PORT; the admission webhook, an app of its
own, over TLS on CONTRACT_WEBHOOK_PORT for the API server's client certificate only."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from modelserve.common.service import configure_logging, serve_all, server_options
from modelserve.common.settings import split
from modelserve.contract.app import create_app, create_webhook_app
from modelserve.contract.settings import ContractSettings

logger = logging.getLogger(__name__)


def common_name(peercert: dict[str, Any] | None) -> str | None:
    """The CN of a verified peer certificate (`ssl.SSLSocket.getpeercert()`'s form)."""
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def client_checked(names: frozenset[str]) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing every connection whose (CA-verified) client
    certificate is not one of `names`: the CA may sign other clients too."""

    class ClientChecked(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            name = common_name(transport.get_extra_info("peercert"))
            if name not in names:
                logger.warning("webhook connection from %s refused: client %r", self.client, name)
                transport.close()

    return ClientChecked


def main() -> None:
    settings = ContractSettings()
    configure_logging(settings, "contract")
    webhook = create_webhook_app(settings)
    api = create_app(settings, webhook)
    configs = [uvicorn.Config(api, port=settings.port, **server_options(settings))]
    if settings.tls_cert_file and settings.tls_key_file:
        if settings.webhook_client_ca_file is None:
            raise SystemExit(
                "CONTRACT_WEBHOOK_CLIENT_CA_FILE is required with CONTRACT_TLS_CERT_FILE: the "
                "webhook accepts only the API server's client certificate"
            )
        configs.append(
            uvicorn.Config(
                webhook,
                port=settings.webhook_port,
                **server_options(settings),
                ssl_certfile=settings.tls_cert_file,
                ssl_keyfile=settings.tls_key_file,
                ssl_ca_certs=str(settings.webhook_client_ca_file),
                ssl_cert_reqs=ssl.CERT_REQUIRED,
                http=client_checked(frozenset(split(settings.webhook_client_names))),
                lifespan="off",  # the API app's lifespan sets up this app's state
            )
        )
    serve_all(configs)
