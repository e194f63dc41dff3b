"""MinIO servers built from the pinned Go module: the upstream store and the platform store."""

from __future__ import annotations

import secrets
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from minio import Minio

from modelserve.testbed.gobuild import binary
from modelserve.testbed.processes import ManagedProcess, free_port

UPSTREAM_BUCKET = "llm-models"  # the seeds' "Quant service" store
PLATFORM_BUCKET = "inference-models"


@dataclass
class MinioServer:
    """One MinIO server with its own data folder and root credentials."""

    name: str
    port: int
    console_port: int
    access_key: str
    secret_key: str
    bucket: str
    data: Path
    process: ManagedProcess

    @property
    def endpoint(self) -> str:
        """host:port, the form the `minio` client takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def client(self) -> Minio:
        return Minio(self.endpoint, self.access_key, self.secret_key, secure=False)

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.data, ignore_errors=True)


def _live(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/minio/health/live", timeout=2) as response:
        return bool(response.status == 200)


def start_minio(
    name: str,
    folder: Path,
    *,
    bucket: str,
    port: int = 0,
    console_port: int = 0,
    access_key: str | None = None,
    secret_key: str | None = None,
    timeout: float = 60.0,
) -> MinioServer:
    """Start a MinIO server on loopback and create `bucket` in it."""
    data = folder / name
    data.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    console_port = console_port or free_port()
    access_key = access_key or f"{name}-admin"
    secret_key = secret_key or secrets.token_urlsafe(24)
    process = ManagedProcess(
        f"minio-{name}",
        [
            binary("minio"),
            "server",
            data,
            f"--address=127.0.0.1:{port}",
            f"--console-address=127.0.0.1:{console_port}",
        ],
        folder / "logs" / f"minio-{name}.log",
        env={
            "MINIO_ROOT_USER": access_key,
            "MINIO_ROOT_PASSWORD": secret_key,
            # No network beyond loopback here: no update checks, no telemetry.
            "MINIO_UPDATE": "off",
            "MINIO_CALLHOME_ENABLE": "off",
        },
    )
    server = MinioServer(name, port, console_port, access_key, secret_key, bucket, data, process)
    process.start()
    try:
        process.wait_until(lambda: _live(server.url), timeout, "live")
        client = server.client()
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
    except BaseException:
        server.stop()
        raise
    return server
