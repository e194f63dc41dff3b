"""MinIO servers built from the pinned Go module: the upstream store and the platform store."""

from __future__ import annotations

import hashlib
import io
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

    def put(self, bucket: str, key: str, data: bytes, *, sha256: str | None = None) -> str:
        """Store `data` (with `sha256` in its metadata, if given); its real SHA-256."""
        metadata: dict[str, str | list[str] | tuple[str]] | None = (
            {"sha256": sha256} if sha256 else None
        )
        self.client().put_object(bucket, key, io.BytesIO(data), len(data), metadata=metadata)
        return hashlib.sha256(data).hexdigest()

    def contents(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under `prefix`, read whole: for small test data only."""
        client = self.client()
        found = {}
        for item in client.list_objects(bucket, prefix=prefix, recursive=True):
            response = client.get_object(bucket, item.object_name)
            try:
                found[str(item.object_name)] = response.read()
            finally:
                response.close()
                response.release_conn()
        return found

    def open_uploads(self, bucket: str, key: str) -> list[str]:
        """Ids of the multipart uploads still open for `key`."""
        result = self.client()._list_multipart_uploads(bucket, prefix=key)
        return [str(upload.upload_id) for upload in result.uploads]

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


def mc_env(*aliases: tuple[str, MinioServer], config_dir: Path) -> dict[str, str]:
    """Environment for `mc` that names each server by an alias and keeps mc's state in
    `config_dir`, so that nothing is written under ~/.mc.

    The credentials go into MC_HOST_<alias> as they are: mc splits them off with a
    pattern and does not URL-decode them.
    """
    env = {"MC_CONFIG_DIR": str(config_dir), "MC_UPDATE": "off"}
    for alias, server in aliases:
        credentials = f"{server.access_key}:{server.secret_key}"
        env[f"MC_HOST_{alias}"] = f"http://{credentials}@{server.endpoint}"
    return env
