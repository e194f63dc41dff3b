"""`modelserve-fetch-model`: the init step of a model server pod.

Copies the model named by MODEL_URI (s3://bucket/key for one file, s3://bucket/prefix/
for a folder) from the platform store into MODEL_DIR. Files are written under a
temporary name and renamed when complete; a marker records what the folder holds,
so a pod on a cache volume that already has the model starts without a download.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path, PurePosixPath

from minio import Minio
from minio.error import S3Error
from pydantic import SecretStr
from pydantic_settings import BaseSettings

MARKER = ".modelserve-fetched"


class FetchSettings(BaseSettings):
    model_uri: str
    model_dir: Path = Path("/models")
    model_store_endpoint: str
    model_store_secure: bool = False
    model_store_access_key: SecretStr
    model_store_secret_key: SecretStr


class FetchError(RuntimeError):
    """The model cannot be fetched; the message says why, for the pod's status."""


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise FetchError(f"MODEL_URI must look like s3://bucket/key, got {uri!r}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise FetchError(f"MODEL_URI names no object: {uri!r}")
    return bucket, key


def _safe_relative(name: str) -> PurePosixPath:
    """An object key below the prefix as a path that cannot leave the model folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise FetchError(f"refusing object key {name!r}: it would leave the model folder")
    return path


def _download(client: Minio, bucket: str, key: str, target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    client.fget_object(bucket, key, str(partial))
    partial.rename(target)
    return target.stat().st_size


def fetch(client: Minio, uri: str, model_dir: Path) -> list[Path]:
    """Copy the model at `uri` into `model_dir`; returns the files written (none if cached)."""
    bucket, key = split_uri(uri)
    marker = model_dir / MARKER
    if marker.exists() and marker.read_text().strip() == uri:
        print(f"fetch-model: {uri} already in {model_dir}, nothing to download", flush=True)
        return []
    marker.unlink(missing_ok=True)
    try:
        if key.endswith("/"):
            objects = [
                (obj.object_name, model_dir / "model" / _safe_relative(obj.object_name[len(key) :]))
                for obj in client.list_objects(bucket, prefix=key, recursive=True)
                if obj.object_name and not obj.is_dir
            ]
            if not objects:
                raise FetchError(f"no objects under {uri}")
        else:
            objects = [(key, model_dir / PurePosixPath(key).name)]
        written = []
        for name, target in objects:
            started = time.monotonic()
            size = _download(client, bucket, name, target)
            seconds = max(time.monotonic() - started, 1e-6)
            print(
                f"fetch-model: {name} -> {target} ({size / 2**20:.1f} MiB, "
                f"{size / 2**20 / seconds:.1f} MiB/s)",
                flush=True,
            )
            written.append(target)
    except S3Error as error:
        raise FetchError(f"cannot fetch {uri}: {error.code}: {error.message}") from error
    marker.write_text(uri + "\n")
    return written


def main() -> None:
    settings = FetchSettings()  # type: ignore[call-arg]  # every field comes from the environment
    client = Minio(
        settings.model_store_endpoint,
        settings.model_store_access_key.get_secret_value(),
        settings.model_store_secret_key.get_secret_value(),
        secure=settings.model_store_secure,
    )
    try:
        fetch(client, settings.model_uri, settings.model_dir)
    except FetchError as error:
        # Kubernetes shows the last line of a failed container's output as its reason.
        print(f"fetch-model: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
