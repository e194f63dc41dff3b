"""What a download request names, checked and turned into keys: pure functions.

A source is one object (a single-file model, usually GGUF) or every object under a
prefix (a folder model: safetensors shards, tokenizer and config files). In the
platform store a model lives under `models/<model id>/`, keeping each file's path
relative to the source.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import uuid
from dataclasses import dataclass

from modelserve.common import bucket_layout

# Object names of the upstream store are trusted no more than a user's input: they
# become keys in the platform store and file names in a model server's volume.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The pattern of free text a request may hold (names, labels, reasons): no control
# characters, since it is stored (PostgreSQL text holds no NUL) and shown to people.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Model ids made from a source (the general form) are stable: asking twice for the same
# bucket and key gives the same model, so the work is done once.
_SOURCE_NAMESPACE = uuid.UUID("1f6b2b9e-55d3-4c5e-9a59-3c8d1c0e7a41")
MODELS_PREFIX = bucket_layout.MODELS
# Ids that are paths of their own under /models/ (GET /models/active, …): a model with one
# of them could not be read at /models/{id}.
RESERVED_MODEL_IDS = frozenset(
    ("active", "history", "register", "uploads", "registrations", "set_active", "rollbacks")
)
MANIFEST = "manifest.json"


class InvalidSource(ValueError):
    """A request names something that can never be downloaded: a 422, no job."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_path(path: str, what: str = "key") -> str:
    """`path` if it is a safe relative object name, else InvalidSource."""
    if not path:
        raise InvalidSource("invalid_key", f"the {what} is empty")
    if not is_unicode(path):
        raise InvalidSource("invalid_key", f"the {what} is not valid Unicode (a lone surrogate)")
    if _CONTROL.search(path):
        raise InvalidSource("invalid_key", f"the {what} {path!r} holds control characters")
    if path.startswith("/") or "\\" in path:
        raise InvalidSource(
            "invalid_key", f"the {what} {path!r} must be a relative path with '/' separators"
        )
    parts = path.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidSource(
            "invalid_key", f"the {what} {path!r} holds an empty, '.' or '..' segment"
        )
    if len(path.encode()) > 1024:
        raise InvalidSource("invalid_key", f"the {what} is longer than 1024 bytes")
    return path


def is_model_id(model_id: str) -> bool:
    """Whether `model_id` could name a model (no other is ever stored)."""
    return bool(_MODEL_ID.match(model_id))


def check_model_id(model_id: str) -> str:
    if not _MODEL_ID.match(model_id):
        raise InvalidSource(
            "invalid_model_id",
            f"model id {model_id!r} must be 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    if model_id in RESERVED_MODEL_IDS:
        raise InvalidSource(
            "invalid_model_id",
            f"model id {model_id!r} is reserved (as are "
            f"{', '.join(sorted(RESERVED_MODEL_IDS))}): they are paths under /models/",
        )
    return model_id


def check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not _SHA256.match(value):
        raise InvalidSource("invalid_checksum", "sha256 must be 64 hexadecimal digits")
    return value


@dataclass(frozen=True)
class Source:
    """One object (`key`) or all objects under `prefix` (ending in '/') of `bucket`."""

    bucket: str
    key: str | None = None
    prefix: str | None = None

    def __post_init__(self) -> None:
        if not _BUCKET.match(self.bucket):
            raise InvalidSource("invalid_bucket", f"{self.bucket!r} is not a bucket name")
        if (self.key is None) == (self.prefix is None):
            raise InvalidSource("invalid_source", "name either a key or a prefix, not both")
        if self.key is not None:
            check_path(self.key)
            if self.key.endswith("/"):
                raise InvalidSource(
                    "invalid_key", f"key {self.key!r} ends in '/': name it as a prefix"
                )
        if self.prefix is not None:
            check_path(self.prefix, "prefix")

    @property
    def folder(self) -> str:
        """The prefix with exactly one trailing '/'."""
        return (self.prefix or "").rstrip("/") + "/"

    @property
    def uri(self) -> str:
        return source_uri(self.bucket, self.key, self.prefix)

    def relative(self, key: str) -> str:
        """The path of an upstream object inside the model."""
        if self.key is not None:
            return posixpath.basename(self.key)
        return key[len(self.folder) :]


def source_uri(bucket: str, key: str | None, prefix: str | None) -> str:
    """s3://bucket/key, or s3://bucket/prefix/ (one trailing "/") for a folder."""
    if key is not None:
        return f"s3://{bucket}/{key}"
    return f"s3://{bucket}/{(prefix or '').rstrip('/')}/"


def source_model_id(source: Source) -> str:
    return str(uuid.uuid5(_SOURCE_NAMESPACE, source.uri))


def refused_model_id(model_id: str | None, bucket: str, key: str | None, prefix: str | None) -> str:
    """Where a refused request is recorded: its model id if that is valid, else one made
    from what it named (as `source_model_id` would, had the source been valid)."""
    if model_id and _MODEL_ID.match(model_id) and model_id not in RESERVED_MODEL_IDS:
        return model_id
    uri = source_uri(bucket, key, prefix)
    if not is_unicode(uri):
        uri = uri.encode("utf-8", "backslashreplace").decode()
    return str(uuid.uuid5(_SOURCE_NAMESPACE, uri))


def is_unicode(text: str) -> bool:
    """Whether `text` can be written as UTF-8: JSON may carry lone surrogates (`\\ud800`),
    which neither PostgreSQL nor a store nor a JSON answer can take."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str | None, limit: int = 1100) -> str | None:
    """`text` safe to store and show: control characters and lone surrogates escaped
    (PostgreSQL text holds no NUL, and only UTF-8), and cut to `limit` characters."""
    if text is None:
        return None
    if _CONTROL.search(text) or not is_unicode(text):
        text = text.encode("unicode_escape").decode("ascii")
    return text[:limit]


def storage_prefix(model_id: str) -> str:
    return f"{MODELS_PREFIX}{model_id}/"


def default_name(source: Source) -> str:
    if source.key is not None:
        return posixpath.basename(source.key)
    return posixpath.basename(source.folder.rstrip("/"))


def model_format(paths: list[str]) -> str:
    """gguf, safetensors, or the most telling extension seen."""
    extensions = {posixpath.splitext(path)[1].lower() for path in paths}
    for extension, name in ((".gguf", "gguf"), (".safetensors", "safetensors")):
        if extension in extensions:
            return name
    if ".bin" in extensions or ".pt" in extensions:
        return "pytorch"
    return "unknown"


def folder_digest(files: dict[str, str]) -> str:
    """One SHA-256 for a folder model: of its `sha256sum`-style listing, sorted by path."""
    listing = "".join(f"{digest}  {path}\n" for path, digest in sorted(files.items()))
    return hashlib.sha256(listing.encode()).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What the upstream says of a folder model in its `manifest.json`:

        {"name": "...", "format": "safetensors",
         "files": [{"path": "model.safetensors", "size": 123, "sha256": "..."}, ...]}

    Listed files must be there and match; files not listed are copied unchecked.
    """

    name: str | None
    format: str | None
    sha256: dict[str, str]
    sizes: dict[str, int]


def parse_manifest(data: bytes) -> Manifest:
    try:
        document = json.loads(data)
        files = document.get("files", [])
        if not isinstance(document, dict) or not isinstance(files, list):
            raise TypeError("expected an object with a list of files")
        sha256: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for entry in files:
            path = check_path(str(entry["path"]), "manifest path")
            digest = check_sha256(entry.get("sha256"))
            if digest is not None:
                sha256[path] = digest
            if entry.get("size") is not None:
                sizes[path] = int(entry["size"])
        name, fmt = document.get("name"), document.get("format")
        return Manifest(str(name) if name else None, str(fmt) if fmt else None, sha256, sizes)
    except InvalidSource as error:
        raise InvalidSource("invalid_manifest", f"{MANIFEST}: {error}") from error
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise InvalidSource("invalid_manifest", f"{MANIFEST} is not valid: {error}") from error
