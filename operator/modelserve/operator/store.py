"""The platform store as the operator sees it: which objects a model is made of, the
SHA-256 the download service recorded on each, and short-lived URLs to fetch them.

The operator holds the store's credentials; model-server pods never do. For each
ModelServe it writes into the namespace only presigned GET URLs for exactly that
model's objects, with the digest each file must have (see `fetch`). The URLs are signed
offline by a client built for the endpoint the pods use, with an explicit region, so
signing makes no call to the store.

Everything here is blocking (the `minio` client is): the handlers call it in a thread.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from minio import Minio
from minio.error import S3Error
from urllib3.exceptions import HTTPError

from modelserve.common.store_tags import MODEL_ID_TAG, SHA256_TAG
from modelserve.operator.settings import OperatorSettings

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Codes of the store that mean "there is no such model", not "the store is unwell".
MISSING = ("NoSuchKey", "NoSuchBucket", "NoSuchObject")


class ModelRefused(Exception):
    """The model cannot be served as it is in the store; the message says why."""


class StoreUnavailable(Exception):
    """The store could not be asked; trying again later may help."""


@dataclass(frozen=True)
class ModelFile:
    """One object of a model: where it goes below the pod's model folder, and its digest."""

    key: str
    path: str
    sha256: str
    model_id: str | None = None


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ModelRefused(f"model.uri must look like s3://bucket/key, got {uri!r}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ModelRefused(f"model.uri names no object: {uri!r}")
    return bucket, key


def safe_relative(name: str) -> PurePosixPath:
    """An object key below the prefix as a path that cannot leave the model folder."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or not path.parts:
        raise ModelRefused(f"refusing object key {name!r}: it would leave the model folder")
    return path


def target_path(uri: str, key: str) -> str:
    """Where `key` of the model at `uri` lands, relative to the pod's model folder: a file
    model as its own name, a folder model below `model/` with its layout kept."""
    _, prefix = split_uri(uri)
    if prefix.endswith("/"):
        return str(PurePosixPath("model") / safe_relative(key[len(prefix) :]))
    return str(safe_relative(PurePosixPath(key).name))


def recorded_file(uri: str, key: str, tags: dict[str, str] | None) -> ModelFile:
    """The file `key` with the digest the download service tagged it with; ModelRefused
    for an object without one: it did not come from a recorded download."""
    digest = (tags or {}).get(SHA256_TAG, "").strip().lower()
    if not SHA256_HEX.fullmatch(digest):
        raise ModelRefused(
            f"{key} is not a recorded download: the object has no {SHA256_TAG} tag "
            "(only the download service's copies are served)"
        )
    return ModelFile(key, target_path(uri, key), digest, (tags or {}).get(MODEL_ID_TAG))


class ModelStore:
    """Two clients of the platform store: one that reads (list, tags) from where the
    operator reaches it, one that only signs URLs for where the pods reach it."""

    def __init__(self, settings: OperatorSettings) -> None:
        access = settings.model_store_access_key.get_secret_value()
        secret = settings.model_store_secret_key.get_secret_value()
        self._reader = Minio(
            settings.model_store_read_endpoint or settings.model_store_endpoint,
            access,
            secret,
            secure=settings.model_store_secure,
            region=settings.model_store_region,
        )
        # With a region given, presigning needs no GetBucketLocation call: it is offline.
        self._signer = Minio(
            settings.model_store_endpoint,
            access,
            secret,
            secure=settings.model_store_secure,
            region=settings.model_store_region,
        )
        self._expiry = dt.timedelta(seconds=settings.model_url_expiry_seconds)

    def resolve(self, uri: str) -> list[ModelFile]:
        """Every object of the model at `uri`, each with its recorded SHA-256."""
        bucket, key = split_uri(uri)
        try:
            if key.endswith("/"):
                keys = [
                    obj.object_name
                    for obj in self._reader.list_objects(bucket, prefix=key, recursive=True)
                    if obj.object_name and not obj.is_dir
                ]
                if not keys:
                    raise ModelRefused(f"no objects under {uri} in the model store")
            else:
                keys = [key]
            return [
                recorded_file(uri, name, dict(self._reader.get_object_tags(bucket, name) or {}))
                for name in keys
            ]
        except S3Error as error:
            if error.code in MISSING:
                raise ModelRefused(f"{uri} is not in the model store ({error.code})") from error
            raise StoreUnavailable(f"the model store refused: {error.code}") from error
        except (HTTPError, OSError) as error:
            raise StoreUnavailable(f"the model store is unreachable: {error}") from error

    def presign(self, uri: str, files: Sequence[ModelFile]) -> str:
        """What the fetch step reads (JSON): each file's path, digest and a GET URL."""
        bucket, _ = split_uri(uri)
        listing = [
            {
                "path": file.path,
                "sha256": file.sha256,
                "url": self._signer.presigned_get_object(bucket, file.key, expires=self._expiry),
            }
            for file in files
        ]
        return json.dumps({"uri": uri, "files": listing}, separators=(",", ":"))
