"""GATEWAY_WORKERS: several worker processes serve one port. The gateway as a process on
real PostgreSQL and the test bed's control plane, with two workers: each serves requests,
each reports its load in a Lease of its own, and SIGTERM to the parent stops them all
cleanly (the Leases deleted, exit status 0)."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelserve.common.load_reports import lease_name
from modelserve.common.tokens import TokenSettings
from modelserve.gateway.main import worker_settings
from modelserve.gateway.settings import GatewaySettings
from modelserve.testbed.platform import GATEWAY_NAMESPACE, RunningService
from modelserve.testbed.polling import wait_for

pytestmark = pytest.mark.postgres

StartGateway = Callable[..., RunningService]
NOT_FOUND = 404
# Connections opened, at most, until each worker has accepted and answered one.
MAX_CONNECTIONS = 200


def settings(replica_id: str | None = None) -> GatewaySettings:
    return GatewaySettings(tokens=TokenSettings(development=True), replica_id=replica_id)


def test_a_shared_replica_id_gets_each_workers_pid() -> None:
    shared = settings("gateway-7d9f-abcde")
    one, two = worker_settings(shared, 101), worker_settings(shared, 102)
    assert (one.replica_id, two.replica_id) == ("gateway-7d9f-abcde-101", "gateway-7d9f-abcde-102")
    # Without one each worker's default id (host, pid, random) is its own already.
    assert worker_settings(settings(), 101).replica_id is None
    # The longest id the setting takes still fits its pattern's 200 characters.
    longest = worker_settings(settings("a" * 200), 4_194_304)
    assert longest.replica_id is not None and len(longest.replica_id) <= 200
    settings(longest.replica_id)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def workers_of(pid: int) -> set[int]:
    """uvicorn's worker processes under the parent `pid` (spawned by multiprocessing;
    not its resource tracker)."""
    found = set()
    for child in children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in command and b"resource_tracker" not in command:
            found.add(child)
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def server_side_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the server's end of the loopback connection from `client_port`."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and (
            int(remote.split(":")[1], 16) == client_port
        ):
            return int(fields[9])
    return None


def served_health(sock: socket.socket) -> bool:
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
    return sock.recv(65536).startswith(b"HTTP/1.1 200")


@pytest.fixture
def connections() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def lease_exists(coordination: k8s.CoordinationV1Api, name: str) -> bool:
    try:
        coordination.read_namespaced_lease(name, GATEWAY_NAMESPACE)
    except ApiException as error:
        if error.status == NOT_FOUND:
            return False
        raise
    return True


def test_two_workers_each_serve_and_report_and_stop_on_sigterm(
    start_gateway: StartGateway,
    gateway_kube: str,
    kube_api: k8s.ApiClient,
    connections: list[socket.socket],
) -> None:
    replica = f"workers-{uuid.uuid4().hex[:8]}"
    gateway = start_gateway(
        GATEWAY_WORKERS="2",
        GATEWAY_KUBECONFIG=gateway_kube,
        GATEWAY_REPLICA_ID=replica,
        GATEWAY_LOAD_REPORT_SECONDS="1",
        GATEWAY_LOAD_LEASE_SECONDS="5",
        GATEWAY_LOG_LEVEL="info",
    )
    parent = gateway.process.pid
    assert parent is not None
    workers = wait_for(
        lambda: found if len(found := workers_of(parent)) == 2 else None,
        timeout=30,
        what="two worker processes",
    )

    # Each worker's lifespan ran: each reports in a Lease named with its own pid.
    coordination = k8s.CoordinationV1Api(kube_api)
    leases = {lease_name(f"{replica}-{pid}") for pid in workers}
    wait_for(
        lambda: all(lease_exists(coordination, name) for name in leases),
        timeout=60,
        what=f"the Leases {sorted(leases)}",
    )

    # Each worker accepts and answers connections on the one port.
    port = int(gateway.url.rsplit(":", 1)[1])
    answered_by: dict[int, int] = {pid: 0 for pid in workers}
    while min(answered_by.values()) == 0 and len(connections) < MAX_CONNECTIONS:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        connections.append(sock)
        assert served_health(sock)
        inode = server_side_inode(port, sock.getsockname()[1])
        for pid in workers:
            if inode in socket_inodes(pid):
                answered_by[pid] += 1
    assert min(answered_by.values()) > 0, f"answers per worker: {answered_by}"
    for sock in connections:
        sock.close()
    connections.clear()

    # SIGTERM to the parent alone (as Kubernetes sends it to the container's first
    # process): every worker drains and runs its shutdown, the parent exits 0.
    os.kill(parent, signal.SIGTERM)
    started = time.monotonic()
    wait_for(lambda: not gateway.process.running(), timeout=40, what="the gateway to exit")
    assert time.monotonic() - started < 30
    assert gateway.process.returncode == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert not any(lease_exists(coordination, name) for name in leases)
    log = gateway.process.log_path.read_text()
    assert log.count("Application shutdown complete") == 2
