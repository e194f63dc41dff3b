"""Host services the pods may reach: a TCP forwarder from the pod network's host address
to the same port on loopback, where the test bed's servers listen.

In a cluster a pod reaches the platform's MinIO through its Service; here MinIO listens
on 127.0.0.1 of the host, which the pod network cannot see. `Forwarder` listens on the
host end of the veth (`PodNetwork.layout.host_address`) and relays each connection.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading

CHUNK = 1 << 16


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Copy until `source` ends, then end `target`'s sending side."""
    with contextlib.suppress(OSError):
        while data := source.recv(CHUNK):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


class _Relay(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.server.target_port), timeout=10)
        except OSError:
            return  # nothing listens there: the pod sees the connection closed
        upstream.settimeout(None)
        with upstream:
            back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
            back.start()
            _pipe(self.request, upstream)
            back.join()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], target_port: int) -> None:
        self.target_port = target_port
        super().__init__(address, _Relay)


class Forwarder:
    """`host_address:port` → `127.0.0.1:port`, until `stop`."""

    def __init__(self, host_address: str, port: int) -> None:
        self._server = _Server((host_address, port), port)
        self.endpoint = f"{host_address}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"forward-{port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
