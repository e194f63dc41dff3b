"""One model copied from the upstream store into the platform store.

Every file is split into parts. A few threads take parts in order across all files:
each reads its part's byte range upstream, uploads it as one part of the file's
multipart upload, then waits its turn to add it to the file's SHA-256 (a digest takes
its parts in order). Memory is therefore bounded by `parallel` parts, whatever the
model's size. Nothing is visible in the platform store until `commit` completes the
uploads, which happens only after every file matched its expected checksum; `discard`
aborts them instead.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from modelserve.common.objects import MAX_PARTS, MIN_PART_SIZE, ObjectStore, StoreError
from modelserve.download.sources import (
    MANIFEST,
    InvalidSource,
    Manifest,
    Source,
    check_path,
    parse_manifest,
    storage_prefix,
)
from modelserve.download.tagging import file_tags

logger = logging.getLogger(__name__)
_MANIFEST_LIMIT = 1 << 20
_PART_ATTEMPTS = 3


class TransferFailed(RuntimeError):
    """The download cannot succeed as asked; `code` is stable, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Cancelled(RuntimeError):
    """The job was cancelled, or another worker took it over."""


@dataclass(frozen=True)
class FilePlan:
    path: str  # inside the model
    source_key: str
    size: int
    etag: str  # upstream: every range is read from this version of the object
    expected_sha256: str | None
    key: str  # in the platform bucket


@dataclass(frozen=True)
class Plan:
    model_id: str
    source: Source
    files: list[FilePlan]
    manifest: Manifest | None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def plan(upstream: ObjectStore, source: Source, model_id: str, sha256: str | None) -> Plan:
    """What to copy: the files of `source`, with the checksums known for them."""
    prefix = storage_prefix(model_id)
    if source.key is not None:
        info = upstream.stat(source.bucket, source.key)
        path = source.relative(source.key)
        expected = sha256 or info.sha256
        return Plan(
            model_id,
            source,
            [FilePlan(path, info.key, info.size, info.etag, expected, prefix + path)],
            None,
        )
    objects = sorted(upstream.objects(source.bucket, source.folder), key=lambda o: o.key)
    if not objects:
        raise StoreError("object_not_found", f"there is nothing under {source.uri}")
    manifest = None
    for info in objects:
        if source.relative(info.key) == MANIFEST:
            if info.size > _MANIFEST_LIMIT:
                raise InvalidSource("invalid_manifest", f"{MANIFEST} is over 1 MiB")
            manifest = parse_manifest(upstream.read(source.bucket, info.key, 0, info.size))
    files = []
    for info in objects:
        path = check_path(source.relative(info.key), "upstream object name")
        expected = (manifest.sha256.get(path) if manifest else None) or info.sha256
        if manifest and path in manifest.sizes and manifest.sizes[path] != info.size:
            raise TransferFailed(
                "size_mismatch",
                f"{path} is {info.size} bytes upstream; {MANIFEST} says {manifest.sizes[path]}",
            )
        files.append(FilePlan(path, info.key, info.size, info.etag, expected, prefix + path))
    if manifest:
        missing = sorted((set(manifest.sha256) | set(manifest.sizes)) - {f.path for f in files})
        if missing:
            raise StoreError(
                "object_not_found",
                f"{MANIFEST} lists {', '.join(missing[:5])} but {source.uri} lacks them",
            )
    return Plan(model_id, source, files, manifest)


def part_size_for(size: int, preferred: int) -> int:
    """`preferred`, or larger where the file would need more than S3's 10,000 parts."""
    smallest = -(-size // MAX_PARTS)
    return max(preferred, MIN_PART_SIZE, -(-smallest // MIN_PART_SIZE) * MIN_PART_SIZE)


@dataclass
class Progress:
    """Counters the transfer threads add to and the job's heartbeat reads."""

    bytes_done: int = 0
    files_done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, size: int, files: int = 0) -> None:
        with self.lock:
            self.bytes_done += size
            self.files_done += files


class _OrderedDigest:
    """SHA-256 of a file whose parts arrive out of order: each part waits for its turn.

    The first `keep` bytes are also written to `head` (a sparse file of the full size),
    so that a GGUF header can be read afterwards without the whole file.
    """

    def __init__(self, parts: int, failed: threading.Event, head: Path | None, keep: int) -> None:
        self.digest = hashlib.sha256()
        self.parts = parts
        self._next = 0
        self._turn = threading.Condition()
        self._failed = failed
        self._head = head
        self._keep = keep
        self._kept = 0

    def wake(self) -> None:
        with self._turn:
            self._turn.notify_all()

    def add(self, index: int, data: bytes) -> bool:
        """Add part `index`; True when it was the last one."""
        with self._turn:
            self._turn.wait_for(lambda: self._next == index or self._failed.is_set())
            if self._failed.is_set():
                raise Cancelled("another part failed")
        # Only the part whose turn it is gets here, so the digest needs no lock.
        self.digest.update(data)
        if self._head is not None and self._kept < self._keep:
            with self._head.open("r+b") as head:
                head.seek(self._kept)
                head.write(data[: self._keep - self._kept])
            self._kept += min(len(data), self._keep - self._kept)
        with self._turn:
            self._next += 1
            self._turn.notify_all()
            return self._next == self.parts


@dataclass
class _Upload:
    file: FilePlan
    digest: _OrderedDigest
    upload_id: str | None = None
    etags: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Outcome:
    files: dict[str, str]  # path -> sha256
    verified: bool  # every file (but the manifest) had an expected checksum, and matched it
    header: Path | None  # the first bytes of the first GGUF file, in a sparse copy


class Transfer:
    def __init__(
        self,
        upstream: ObjectStore,
        platform: ObjectStore,
        bucket: str,
        plan: Plan,
        *,
        part_size: int,
        parallel: int,
        workdir: Path,
        header_bytes: int,
    ) -> None:
        self.upstream = upstream
        self.platform = platform
        self.bucket = bucket
        self.plan = plan
        self.part_size = part_size
        self.parallel = parallel
        self.progress = Progress()
        self.stop = threading.Event()  # set from outside: cancel
        self._failed = threading.Event()
        self._uploads: list[_Upload] = []
        self._completed: set[str] = set()
        self._completing = threading.Lock()
        ggufs = [f for f in plan.files if f.path.lower().endswith(".gguf")]
        self.header = workdir / "header.gguf" if ggufs else None
        self._header_file = ggufs[0] if ggufs else None
        self._header_bytes = header_bytes

    # --- copying --------------------------------------------------------------------------

    def clear_leftovers(self) -> None:
        """Abort multipart uploads an earlier attempt left open for these files."""
        for file in self.plan.files:
            while ids := self.platform.open_uploads(self.bucket, file.key):
                for upload_id in ids:
                    self.platform.abort_upload(self.bucket, file.key, upload_id)

    def copy(self) -> None:
        """Copy every file into open multipart uploads, computing their SHA-256."""
        if self.header is not None and self._header_file is not None:
            with self.header.open("wb") as head:
                head.truncate(self._header_file.size)
        work = self._work()
        take = threading.Lock()

        def worker() -> None:
            try:
                while True:
                    with take:
                        item = next(work, None)
                    if item is None:
                        return
                    if self.stop.is_set():
                        raise Cancelled("the download was cancelled")
                    self._copy_part(*item)
            except BaseException:
                # Parts waiting for their turn behind this one would wait forever.
                self._fail_all()
                raise

        with ThreadPoolExecutor(self.parallel, thread_name_prefix="part") as pool:
            futures = [pool.submit(worker) for _ in range(self.parallel)]
            errors = [e for e in (f.exception() for f in futures) if e is not None]
        if errors:
            # The first failure is the cause; the others are mostly "another part failed".
            raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])

    def _work(self) -> Iterator[tuple[_Upload, int, int, int]]:
        for file in self.plan.files:
            size = part_size_for(file.size, self.part_size)
            parts = max(1, -(-file.size // size))
            keep = self._header_bytes if file is self._header_file else 0
            digest = _OrderedDigest(parts, self._failed, self.header if keep else None, keep)
            upload = _Upload(file, digest, etags=[""] * parts)
            self._uploads.append(upload)
            for index in range(parts):
                offset = index * size
                yield upload, index, offset, min(size, file.size - offset)

    def _fail_all(self) -> None:
        self._failed.set()
        for upload in self._uploads:
            upload.digest.wake()

    def _copy_part(self, upload: _Upload, index: int, offset: int, length: int) -> None:
        file = upload.file
        with upload.lock:
            if upload.upload_id is None:
                upload.upload_id = self.platform.create_upload(self.bucket, file.key)
        for attempt in range(1, _PART_ATTEMPTS + 1):
            try:
                data = (
                    self.upstream.read(
                        self.plan.source.bucket, file.source_key, offset, length, etag=file.etag
                    )
                    if length
                    else b""
                )
                upload.etags[index] = self.platform.upload_part(
                    self.bucket, file.key, upload.upload_id, index + 1, data
                )
                break
            except StoreError as error:
                if not error.retryable or attempt == _PART_ATTEMPTS:
                    raise
                logger.warning("%s part %d: %s; trying again", file.path, index + 1, error)
        last = upload.digest.add(index, data)
        self.progress.add(length, files=1 if last else 0)

    def verify(self) -> Outcome:
        """The checksums of the copy, checked against those expected."""
        files: dict[str, str] = {}
        verified = True
        for upload in self._uploads:
            digest = upload.digest.digest.hexdigest()
            expected = upload.file.expected_sha256
            if expected is not None and digest != expected:
                raise TransferFailed(
                    "checksum_mismatch",
                    f"{upload.file.path}: SHA-256 {digest} differs from the expected {expected}",
                )
            # The manifest is what vouches for the others; nothing vouches for it.
            verified = verified and (expected is not None or upload.file.path == MANIFEST)
            files[upload.file.path] = digest
        return Outcome(files, verified, self.header)

    # --- the end: commit or discard -------------------------------------------------------

    def commit(self, outcome: Outcome) -> None:
        """Complete every upload: the files appear at their final keys, each then tagged
        with its SHA-256 and the model's id (`tagging.file_tags`). In parallel, as a folder
        of many small files has one completion per file."""

        def complete(upload: _Upload) -> None:
            if upload.upload_id is None:
                raise TransferFailed("incomplete", f"{upload.file.path} was never uploaded")
            self.platform.complete_upload(
                self.bucket, upload.file.key, upload.upload_id, upload.etags
            )
            with self._completing:
                self._completed.add(upload.file.key)
            tags = file_tags(self.plan.model_id, outcome.files[upload.file.path])
            self.platform.set_tags(self.bucket, upload.file.key, tags)

        with ThreadPoolExecutor(self.parallel, thread_name_prefix="commit") as pool:
            for _ in pool.map(complete, self._uploads):
                pass

    @property
    def committed(self) -> bool:
        """Whether some file already sits at its final key."""
        return bool(self._completed)

    def discard(self, *, remove_committed: bool) -> None:
        """Abort the uploads still open; with `remove_committed`, also delete the files
        this transfer completed (only while its job is still this worker's: the same keys
        may by now hold another worker's verified copy)."""
        for upload in self._uploads:
            if upload.upload_id is not None and upload.file.key not in self._completed:
                try:
                    self.platform.abort_upload(self.bucket, upload.file.key, upload.upload_id)
                except StoreError as error:
                    logger.warning("upload of %s not aborted: %s", upload.file.key, error)
        if remove_committed:
            for key in sorted(self._completed):
                self.platform.remove(self.bucket, key)
