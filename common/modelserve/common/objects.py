"""An object store (the platform MinIO, an upstream S3), behind the few calls that the
download service's transfers and the jobs service's output files need.

Parts are uploaded one by one so that a model stays invisible until every file of it is
complete and verified: S3 shows a multipart upload only once it is completed, and an
aborted one leaves nothing. The `minio` package does multipart uploads only inside
`put_object`, which completes them itself, so this module calls its per-request methods
(`_create_multipart_upload`, `_upload_part`, ...) and nothing else does; the package is
pinned below 8 for that reason.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import urllib3
from minio import Minio
from minio.commonconfig import Tags
from minio.datatypes import Part
from minio.error import S3Error
from pydantic import SecretStr

# S3's limits on multipart uploads.
MIN_PART_SIZE = 5 << 20
MAX_PARTS = 10_000

# S3 error codes, in the words a person asking for a download needs.
_CREDENTIALS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}

logger = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """A store refused or failed a request; `code` is stable, `message` for people."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


def explain(error: BaseException, store: str, what: str) -> StoreError:
    """`error` from a request about `what` on the `store` store, as a StoreError."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, S3Error):
        if error.code == "NoSuchBucket":
            bucket = error.bucket_name or what
            return StoreError("unknown_bucket", f"the {store} store has no bucket {bucket}")
        if error.code in ("NoSuchKey", "NoSuchObject"):
            return StoreError("object_not_found", f"the {store} store has no object {what}")
        if error.code == "PreconditionFailed":
            return StoreError("source_changed", f"{what} changed in the {store} store meanwhile")
        if error.code in _CREDENTIALS:
            return StoreError(
                "store_credentials",
                f"the {store} store refused the credentials for {what} ({error.code})",
            )
        return StoreError(
            "store_error", f"the {store} store answered {error.code} for {what}: {error.message}"
        )
    # urllib3's text names the store's address inside the cluster: logged, never answered.
    logger.warning("the %s store is unreachable (%s): %s", store, what, error)
    return StoreError("store_unreachable", f"the {store} store is unreachable", retryable=True)


@dataclass(frozen=True)
class StoreConfig:
    endpoint: str  # host:port
    access_key: str
    secret_key: SecretStr
    secure: bool = False
    region: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    metadata: dict[str, str]

    @property
    def sha256(self) -> str | None:
        """A checksum the producer put in the object's metadata (x-amz-meta-sha256)."""
        for name, value in self.metadata.items():
            if name.lower() in ("x-amz-meta-sha256", "sha256"):
                return value.strip().lower()
        return None


class ObjectStore:
    """One store, one connection pool, used from many threads at once."""

    def __init__(self, name: str, config: StoreConfig, connections: int) -> None:
        self.name = name
        http = urllib3.PoolManager(
            maxsize=connections,
            block=True,
            timeout=urllib3.Timeout(connect=10, read=120),
            retries=urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503)),
        )
        self._client = Minio(
            config.endpoint,
            access_key=config.access_key,
            secret_key=config.secret_key.get_secret_value(),
            secure=config.secure,
            region=config.region,
            http_client=http,
        )
        self._http = http

    def close(self) -> None:
        self._http.clear()

    @contextlib.contextmanager
    def _request(self, what: str) -> Iterator[None]:
        """One request to the store about `what`: its failures become StoreErrors."""
        try:
            yield
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as error:
            raise explain(error, self.name, what) from error

    # --- reading --------------------------------------------------------------------------

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        with self._request(f"s3://{bucket}/{key}"):
            stat = self._client.stat_object(bucket, key)
        etag = str(stat.etag).strip('"')
        return ObjectInfo(key, int(stat.size or 0), etag, dict(stat.metadata or {}))

    def objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        with self._request(f"s3://{bucket}/{prefix}"):
            # With user metadata (a MinIO extension; S3 ignores it): a checksum the
            # producer set is then known without one HEAD request per file.
            listing = self._client.list_objects(
                bucket, prefix=prefix, recursive=True, include_user_meta=True
            )
            for item in listing:
                if item.is_dir:
                    continue
                metadata = {str(k): str(v) for k, v in (item.metadata or {}).items()}
                etag = str(item.etag).strip('"')
                yield ObjectInfo(str(item.object_name), int(item.size or 0), etag, metadata)

    def read(
        self, bucket: str, key: str, offset: int, length: int, etag: str | None = None
    ) -> bytes:
        """`length` bytes of an object from `offset` (of the version with `etag`, if
        given); a short read is an error."""
        headers: dict[str, str | list[str] | tuple[str]] | None = (
            {"If-Match": f'"{etag}"'} if etag else None
        )
        with self._request(f"s3://{bucket}/{key}"):
            response = self._client.get_object(
                bucket, key, offset=offset, length=length, request_headers=headers
            )
            try:
                data: bytes = response.read()
            finally:
                response.close()
                response.release_conn()
        if len(data) != length:
            raise StoreError(
                "short_read",
                f"s3://{bucket}/{key} gave {len(data)} bytes at {offset}, not {length}: "
                "did it change during the download?",
                retryable=True,
            )
        return data

    # --- writing: multipart uploads -------------------------------------------------------

    def create_upload(self, bucket: str, key: str) -> str:
        with self._request(f"s3://{bucket}/{key}"):
            upload_id: str = self._client._create_multipart_upload(
                bucket, key, {"Content-Type": "application/octet-stream"}
            )
        return upload_id

    def upload_part(self, bucket: str, key: str, upload_id: str, number: int, data: bytes) -> str:
        with self._request(f"s3://{bucket}/{key}"):
            etag: str = self._client._upload_part(bucket, key, data, None, upload_id, number)
        return etag

    def complete_upload(self, bucket: str, key: str, upload_id: str, etags: list[str]) -> None:
        parts = [Part(number, etag) for number, etag in enumerate(etags, start=1)]
        with self._request(f"s3://{bucket}/{key}"):
            self._client._complete_multipart_upload(bucket, key, upload_id, parts)

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        with self._request(f"s3://{bucket}/{key}"):
            try:
                self._client._abort_multipart_upload(bucket, key, upload_id)
            except S3Error as error:
                # Aborted already (or completed): nothing is left open either way.
                if error.code != "NoSuchUpload":
                    raise

    def open_uploads(self, bucket: str, key: str) -> list[str]:
        """Ids of multipart uploads still open for `key` (one page: call again after
        aborting them). MinIO lists uploads by object name, not by folder."""
        with self._request(f"s3://{bucket}/{key}"):
            result = self._client._list_multipart_uploads(bucket, prefix=key)
        return [str(upload.upload_id) for upload in result.uploads if upload.object_name == key]

    # --- object tags ----------------------------------------------------------------------

    def tags(self, bucket: str, key: str) -> dict[str, str]:
        """The object's tags ({} when it has none)."""
        with self._request(f"s3://{bucket}/{key}"):
            tags = self._client.get_object_tags(bucket, key)
        return dict(tags or {})

    def set_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        """Replace the object's tags with `tags`."""
        object_tags = Tags.new_object_tags()
        object_tags.update(tags)
        with self._request(f"s3://{bucket}/{key}"):
            self._client.set_object_tags(bucket, key, object_tags)

    def remove(self, bucket: str, key: str) -> None:
        with self._request(f"s3://{bucket}/{key}"):
            self._client.remove_object(bucket, key)
