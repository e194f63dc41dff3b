"""Where an evaluation dataset is, who may read it, and its lines as items.

Datasets live in the jobs service's bucket of the platform store, under `datasets/`,
readable by every caller who may queue jobs. A `dataset_ref` is `s3://<bucket>/<key>`
(that bucket only) or a key under `datasets/` (the prefix may be left out:
`math_eval.jsonl` is `datasets/math_eval.jsonl`, as in seed 003). Admins may name any
key of the bucket. The caller's own OpenAI Files (`file-…`, uploaded through `/v1/files`)
are datasets too (`routes.dataset_of`). Anything else is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from modelserve.common.objects import ObjectInfo, ObjectStore

DATASETS = "datasets/"
CHUNK = 1 << 20
# One example (a line) at most this long, and at most this many of a dataset without
# max_samples: an example is kept in PostgreSQL with the job, all in one transaction.
LINE_MAX_BYTES = 1 << 20
MAX_ITEMS = 100_000
MAX_KEY_BYTES = 1024


class DatasetRefused(ValueError):
    """A dataset_ref out of the caller's reach or not a reference at all."""


def dataset_key(ref: str, *, bucket: str, admin: bool) -> str:
    """The key in `bucket` that `ref` names, for a caller who is an admin or not."""
    if ref.startswith("s3://"):
        named, _, key = ref.removeprefix("s3://").partition("/")
        if named != bucket:
            raise DatasetRefused(
                f"datasets are read from the platform store's bucket {bucket!r}, not {named!r}"
            )
    elif "://" in ref:
        raise DatasetRefused("a dataset_ref is s3://<bucket>/<key> or a key under datasets/")
    else:
        key = ref if ref.startswith(DATASETS) else DATASETS + ref
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise DatasetRefused(f"{ref!r} is not a key of a dataset")
    # S3 keys are at most 1,024 bytes; control characters name no dataset anyone wrote.
    if len(key.encode()) > MAX_KEY_BYTES or any(ord(char) < 32 for char in key):
        raise DatasetRefused(f"{ref[:80]!r}… is not a key of a dataset (too long or odd)")
    if not admin and not key.startswith(DATASETS):
        raise DatasetRefused(f"only datasets under {DATASETS} may be read, not {key!r}")
    return key


async def dataset_items(
    objects: ObjectStore, bucket: str, info: ObjectInfo, *, limit: int | None
) -> AsyncIterator[dict[str, Any]]:
    """One item per non-blank line of the dataset (`{"line", "text"}`, lines counted
    from 1), at most `limit` (or MAX_ITEMS); read in chunks of the version `info`
    describes. DatasetRefused for a line over LINE_MAX_BYTES, or more than MAX_ITEMS
    examples without a `limit`."""
    if limit is None:
        limit = MAX_ITEMS + 1  # one more: to tell "exactly the cap" from "over it"
    pending = b""
    number = count = 0
    offset = 0
    while offset < info.size or pending:
        if offset < info.size:
            length = min(CHUNK, info.size - offset)
            pending += await asyncio.to_thread(
                objects.read, bucket, info.key, offset, length, info.etag
            )
            offset += length
            *lines, pending = pending.split(b"\n")
            if len(pending) > LINE_MAX_BYTES:
                raise DatasetRefused(
                    f"line {number + len(lines) + 1} of the dataset is over {LINE_MAX_BYTES} bytes"
                )
        else:
            lines, pending = [pending], b""
        for raw in lines:
            number += 1
            if len(raw) > LINE_MAX_BYTES:
                raise DatasetRefused(f"line {number} of the dataset is over {LINE_MAX_BYTES} bytes")
            text = raw.decode("utf-8", errors="replace").rstrip("\r")
            if not text.strip():
                continue
            count += 1
            if count > MAX_ITEMS:
                raise DatasetRefused(
                    f"the dataset has more than {MAX_ITEMS} examples: give max_samples"
                )
            yield {"line": number, "text": text}
            if count >= limit:
                return
