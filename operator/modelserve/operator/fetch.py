"""`modelserve-fetch-model`: the init step of a model server pod.

Downloads the model's files into MODEL_DIR with plain HTTP GETs of the short-lived URLs
the operator signed for exactly this model (MODEL_FILES, from the ModelServe's Secret):
the pod holds no credential of the store. Each file streams into `<name>.partial` while
its SHA-256 is computed, and is renamed only when the digest is the one the download
service recorded; a file whose digest differs is refused, and the pod's server never
starts. A marker records what the folder holds, so a pod on a cache volume that already
has these very files starts without a download.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx
from pydantic_settings import BaseSettings

MARKER = ".modelserve-fetched"
CHUNK = 1 << 20


class FetchSettings(BaseSettings):
    model_uri: str
    model_dir: Path = Path("/models")
    model_files: str
    """JSON: {"uri": ..., "files": [{"path", "sha256", "url"}, ...]} (see operator.store)."""
    model_fetch_timeout: float = 60.0
    """Seconds to connect, and at most between two reads of a download."""


class FetchError(RuntimeError):
    """The model cannot be fetched; the message says why, for the pod's status."""


@dataclass(frozen=True)
class FileToFetch:
    path: PurePosixPath
    sha256: str
    url: str


def parse_files(text: str, model_dir: Path) -> list[FileToFetch]:
    """The files of MODEL_FILES; FetchError for anything that is not a list of them or
    a path that would leave the model folder."""
    try:
        listing = json.loads(text)["files"]
        files = [FileToFetch(PurePosixPath(f["path"]), f["sha256"], f["url"]) for f in listing]
    except (ValueError, KeyError, TypeError) as error:
        raise FetchError(f"MODEL_FILES is not a list of files to fetch: {error}") from error
    if not files:
        raise FetchError("MODEL_FILES names no file")
    for file in files:
        if file.path.is_absolute() or ".." in file.path.parts or not file.path.parts:
            raise FetchError(f"refusing path {str(file.path)!r}: it would leave {model_dir}")
    return files


def _store_error(response: httpx.Response) -> str:
    """The store's error code (S3 answers XML), never the URL: it carries a signature."""
    code = re.search(r"<Code>([^<]{1,64})</Code>", response.read().decode(errors="replace"))
    return f"{response.status_code} {code.group(1) if code else response.reason_phrase}"


def _download(http: httpx.Client, file: FileToFetch, target: Path) -> int:
    """Stream one file to `<target>.partial`, check its digest, rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with http.stream("GET", file.url) as response:
            if response.status_code != 200:
                raise FetchError(f"cannot fetch {file.path}: {_store_error(response)}")
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
    except httpx.HTTPError as error:
        partial.unlink(missing_ok=True)
        raise FetchError(f"cannot fetch {file.path}: {type(error).__name__}") from error
    if digest.hexdigest() != file.sha256:
        partial.unlink(missing_ok=True)
        raise FetchError(
            f"refusing {file.path}: its SHA-256 is {digest.hexdigest()}, "
            f"the model record says {file.sha256}"
        )
    partial.rename(target)
    return size


def _marker_text(uri: str, files: Sequence[FileToFetch]) -> str:
    return json.dumps({"uri": uri, "files": {str(f.path): f.sha256 for f in files}}) + "\n"


def fetch(
    http: httpx.Client, uri: str, files: Sequence[FileToFetch], model_dir: Path
) -> list[Path]:
    """Download `files` into `model_dir`, each checked against its digest; returns the
    files written (none where the folder already holds exactly these)."""
    marker = model_dir / MARKER
    expected = _marker_text(uri, files)
    if marker.exists() and marker.read_text() == expected:
        print(f"fetch-model: {uri} already in {model_dir}, nothing to download", flush=True)
        return []
    marker.unlink(missing_ok=True)
    written = []
    for file in files:
        target = model_dir / file.path
        started = time.monotonic()
        size = _download(http, file, target)
        seconds = max(time.monotonic() - started, 1e-6)
        print(
            f"fetch-model: {file.path} ({size / 2**20:.1f} MiB, "
            f"{size / 2**20 / seconds:.1f} MiB/s, SHA-256 verified)",
            flush=True,
        )
        written.append(target)
    marker.write_text(expected)
    return written


def main() -> None:
    settings = FetchSettings()  # type: ignore[call-arg]  # every field comes from the environment
    timeout = httpx.Timeout(settings.model_fetch_timeout)
    try:
        files = parse_files(settings.model_files, settings.model_dir)
        # No credentials and no redirects: the URL is the whole permission.
        with httpx.Client(timeout=timeout, follow_redirects=False) as http:
            fetch(http, settings.model_uri, files, settings.model_dir)
    except FetchError as error:
        # Kubernetes shows the last line of a failed container's output as its reason.
        print(f"fetch-model: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
