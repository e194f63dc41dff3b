"""The object tags that carry a model record's checksums onto each stored file
(`modelserve.common.store_tags`): what they are, and the back-fill of files stored before
the service tagged them.

A transfer tags each file right after completing it and before the record is written
(`transfers.Transfer.commit`), so a ready record always has tagged objects. Records from
before are tagged at start-up from their recorded `files` digests (`backfill`): the
SHA-256 the service computed when it copied them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from modelserve.common.objects import ObjectStore, StoreError
from modelserve.common.store_tags import MODEL_ID_TAG, SHA256_TAG
from modelserve.download.sources import storage_prefix
from modelserve.download.tables import ModelRecord

logger = logging.getLogger(__name__)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def file_tags(model_id: str, sha256: str) -> dict[str, str]:
    """The tags of one stored file of model `model_id`."""
    return {SHA256_TAG: sha256.lower(), MODEL_ID_TAG: model_id}


def record_objects(record: ModelRecord) -> list[tuple[str, dict[str, str]]]:
    """(key in `record.bucket`, tags) of every stored file of a record, manifest included;
    an entry without a path and a SHA-256 (which the service always records) is left out."""
    prefix = storage_prefix(record.id)
    return [
        (prefix + path, file_tags(record.id, digest))
        for entry in record.files
        if isinstance(path := entry.get("path"), str)
        and isinstance(digest := entry.get("sha256"), str)
        and _SHA256.match(digest.lower())
    ]


def backfill(platform: ObjectStore, records: Iterable[ModelRecord]) -> int:
    """Tag the files of `records` whose tags differ from the record's; idempotent. A file
    that cannot be tagged (gone from the store) is logged and skipped. The number tagged."""
    tagged = 0
    for record in records:
        for key, tags in record_objects(record):
            try:
                if platform.tags(record.bucket, key) == tags:
                    continue
                platform.set_tags(record.bucket, key, tags)
            except StoreError as error:
                if error.retryable:
                    raise
                logger.warning(
                    "model %s: s3://%s/%s not tagged: %s", record.id, record.bucket, key, error
                )
                continue
            tagged += 1
    return tagged
