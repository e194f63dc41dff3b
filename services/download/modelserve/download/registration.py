"""What a registration or an upload names, checked: pure functions.

A registered version is copied from the platform bucket itself: from an object or folder
already there (`uri`), or from an upload in its staging prefix `uploads/<upload id>/`.
The copy lands under `models/<id>/` like a download's, so no later write reaches it.
"""

from __future__ import annotations

import re

from modelserve.common import bucket_layout
from modelserve.download.sources import (
    MODELS_PREFIX,
    InvalidSource,
    Source,
    check_path,
)
from modelserve.download.transfers import part_size_for

UPLOADS_PREFIX = bucket_layout.UPLOADS
MAX_TAGS = 32
# S3's largest object.
MAX_UPLOAD_SIZE = 5 << 40
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:=+-]{0,63}$")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


def parse_tags(value: str | list[str] | None) -> list[str]:
    """Tags as the seed gives them ("step5000,math") or as a list (whose items may hold
    commas too): each 1-64 of letters, digits and `. _ : = + -`, at most 32, duplicates
    dropped, order kept."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    tags: list[str] = []
    for item in items:
        for tag in (part.strip() for part in item.split(",")):
            if not tag:
                continue
            if not _TAG.match(tag):
                raise InvalidSource(
                    "invalid_tags",
                    f"tag {tag[:80]!r} must be 1-64 letters, digits, '.', '_', ':', '=', '+'"
                    " or '-', starting with a letter or digit",
                )
            if tag not in tags:
                tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise InvalidSource("invalid_tags", f"at most {MAX_TAGS} tags, not {len(tags)}")
    return tags


def parse_platform_uri(uri: str, bucket: str) -> Source:
    """The object (`s3://<bucket>/<key>`) or folder (`s3://<bucket>/<prefix>/`) of the
    platform bucket `uri` names, or InvalidSource."""
    if not uri.startswith("s3://"):
        raise InvalidSource("invalid_uri", f"uri must look like s3://{bucket}/<key or prefix/>")
    named, _, path = uri.removeprefix("s3://").partition("/")
    if named != bucket:
        raise InvalidSource(
            "uri_outside_platform_store",
            f"register checkpoints of the platform bucket {bucket}, not of {named!r}: "
            "upload one with POST /models/uploads",
        )
    if not path:
        raise InvalidSource("invalid_uri", f"uri names no object or folder of {bucket}")
    if path.endswith("/"):
        return Source(bucket, prefix=check_path(path, "uri's prefix"))
    return Source(bucket, key=check_path(path, "uri's key"))


def _path(source: Source) -> str:
    return source.key if source.key is not None else source.folder


def stored_model(source: Source) -> str | None:
    """The model id whose stored copy `source` lies inside (`models/<id>/...`), if any;
    None for `models/` itself, what lies above it, and objects directly in it."""
    path = _path(source)
    if not path.startswith(MODELS_PREFIX):
        return None
    model_id, inside, _ = path.removeprefix(MODELS_PREFIX).partition("/")
    return model_id if model_id and inside else None


def reaches(source: Source, prefix: str) -> bool:
    """Whether `source` names something in `prefix` (a folder, ending in '/'): an object
    or folder inside it, the folder itself, or a folder above it that contains it."""
    path = _path(source)
    return path.startswith(prefix) or (source.key is None and prefix.startswith(path))


def check_filename(filename: str) -> str:
    """A file name (one path segment) for an upload's key."""
    check_path(filename, "filename")
    if "/" in filename:
        raise InvalidSource("invalid_filename", f"filename {filename!r} must not hold '/'")
    return filename


def is_upload_id(value: str) -> bool:
    return bool(_UPLOAD_ID.match(value))


def upload_key(upload_id: str, filename: str) -> str:
    return f"{UPLOADS_PREFIX}{upload_id}/{filename}"


def upload_parts(size: int, part_size: int) -> tuple[int, int | None]:
    """(parts, part size) of an upload of `size` bytes: (1, None), one PUT, up to
    `part_size`; else a multipart upload of parts of `part_size` (larger where S3's
    10,000 parts would not do)."""
    if size <= part_size:
        return 1, None
    size_of_part = part_size_for(size, part_size)
    return -(-size // size_of_part), size_of_part


def check_parts(parts: list[tuple[int, str]], expected: int) -> list[str]:
    """The ETags of parts 1..`expected`, given as (part number, ETag) in any order; each
    part exactly once."""
    numbers = sorted(number for number, _ in parts)
    if numbers != list(range(1, expected + 1)):
        raise InvalidSource(
            "invalid_parts",
            f"name each of the {expected} parts once (part_number 1 to {expected}) with the "
            "ETag its PUT answered",
        )
    etags = dict(parts)
    return [etags[number].strip().strip('"') for number in range(1, expected + 1)]
