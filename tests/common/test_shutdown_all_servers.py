"""SIGTERM to a process of several uvicorn servers (the contract service: its API, and its
admission webhook over TLS): both stop accepting connections at once and drain side by
side within the one grace, and the process exits by itself; a second signal cuts what is
left. Each server has a request in flight, waiting for the rest of its body (the client's
`Expect: 100-continue` tells when the app is reading it)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelserve.contract.admission import PATH
from modelserve.testbed.pki import CertificateAuthority
from modelserve.testbed.platform import RunningService, start_service
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.processes import free_port, port_open

SECRET = "shutdown-all-servers-secret-of-at-least-32-bytes"
CLIENT = "shutdown-test-webhook-client"
# The grace each server has: far longer than any wait below, so that a server left
# accepting until another's drain ends (or a second grace) is noticed.
GRACE = 60
BODY = b'{"action": "deploy"}'


@dataclass
class Contract:
    service: RunningService
    api_port: int
    webhook_port: int
    client: ssl.SSLContext


@pytest.fixture
def contract(database_url: str, testbed_dir: Path, tmp_path: Path) -> Iterator[Contract]:
    authority = CertificateAuthority(tmp_path / "pki")
    serving = authority.issue("webhook", "modelserve-contract", hosts=("127.0.0.1",), server=True)
    client_pair = authority.issue("client", CLIENT, client=True)
    client = ssl.create_default_context(cafile=str(authority.pair.cert))
    client.load_cert_chain(str(client_pair.cert), str(client_pair.key))
    api_port, webhook_port = free_port(), free_port()
    with fresh_schema(database_url, "shutdown") as schema:
        service = start_service(
            "contract",
            testbed_dir / "logs",
            {
                "JWT_SECRET": SECRET,
                "CONTRACT_DATABASE_URL": schema_url(database_url, schema),
                "CONTRACT_INVENTORY_SECONDS": "0",
                "CONTRACT_SHUTDOWN_GRACE_SECONDS": str(GRACE),
                "CONTRACT_WEBHOOK_PORT": str(webhook_port),
                "CONTRACT_TLS_CERT_FILE": str(serving.cert),
                "CONTRACT_TLS_KEY_FILE": str(serving.key),
                "CONTRACT_WEBHOOK_CLIENT_CA_FILE": str(authority.pair.cert),
                "CONTRACT_WEBHOOK_CLIENT_NAMES": CLIENT,
            },
            port=api_port,
        )
        try:
            wait_for(lambda: port_open(webhook_port), timeout=30, what="the webhook to listen")
            yield Contract(service, api_port, webhook_port, client)
        finally:
            service.stop()


def in_flight(sock: socket.socket, path: str) -> socket.socket:
    """Send a POST's headers (and none of its body) and return once the app reads the
    body: uvicorn answers `100 Continue` then, not before."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\nExpect: 100-continue\r\n\r\n"
    )
    sock.sendall(head.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        assert chunk, f"closed before 100 Continue: {answer!r}"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 100 "), answer
    return sock


def requests_in_flight(contract: Contract) -> list[socket.socket]:
    api = socket.create_connection(("127.0.0.1", contract.api_port), timeout=30)
    raw = socket.create_connection(("127.0.0.1", contract.webhook_port), timeout=30)
    webhook = contract.client.wrap_socket(raw, server_hostname="127.0.0.1")
    return [in_flight(api, "/decide"), in_flight(webhook, PATH)]


def status_line(sock: socket.socket) -> bytes:
    """The first line of what the server answers until it closes (b"" for nothing)."""
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    return answer.split(b"\r\n", 1)[0]


def terminate(service: RunningService) -> None:
    pid = service.process.pid
    assert pid is not None
    os.killpg(pid, signal.SIGTERM)


def both_closed(contract: Contract) -> bool:
    return not port_open(contract.api_port) and not port_open(contract.webhook_port)


def test_sigterm_stops_every_server_at_once_and_they_drain_together(contract: Contract) -> None:
    requests = requests_in_flight(contract)
    try:
        terminate(contract.service)
        # Both stop accepting while both requests are still in flight (a server left to
        # drain after another would listen on for the other's whole grace).
        wait_for(lambda: both_closed(contract), timeout=20, what="both ports to close")
        for sock in requests:
            sock.sendall(BODY)
        # Each request in flight is answered (no token: 401; not a review: 400).
        assert [status_line(sock) for sock in requests] == [
            b"HTTP/1.1 401 Unauthorized",
            b"HTTP/1.1 400 Bad Request",
        ]
    finally:
        for sock in requests:
            sock.close()
    process = contract.service.process
    wait_for(lambda: process.returncode is not None, timeout=GRACE, what="the service to exit")
    # uvicorn's way: the signal raised again once all is shut down, so the exit status
    # says what ended it.
    assert process.returncode == -signal.SIGTERM
    log = process.log_path.read_text()
    assert "Application shutdown complete." in log
    assert "timeout graceful shutdown exceeded" not in log


def test_a_second_sigterm_cuts_what_is_left(contract: Contract) -> None:
    requests = requests_in_flight(contract)
    try:
        terminate(contract.service)
        wait_for(lambda: both_closed(contract), timeout=20, what="both ports to close")
        terminate(contract.service)
        process = contract.service.process
        # Long before the grace, with both requests still waiting for their bodies.
        wait_for(lambda: process.returncode is not None, timeout=20, what="the service to exit")
        # Cut, not answered: the app's task is cancelled as the loop closes (uvicorn then
        # answers 500 where it still can) or the connection just ends.
        cut = {b"", b"HTTP/1.1 500 Internal Server Error"}
        found = [status_line(sock) for sock in requests]
        assert set(found) <= cut, found
    finally:
        for sock in requests:
            sock.close()
