"""Pure decisions of a data-generation job: where its shards may go, how many items it
runs, and which tasks each item shows the model."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel

from modelserve.common import bucket_layout
from modelserve.jobs.datagen.examples import Example

KIND = "data_gen"
HOME = bucket_layout.DATAGEN.rstrip("/")
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_KEY_CHARS = 512
# Items one job may have, resumes included; its finisher's near-duplicate search over that
# many instructions measured 5.0 s on a 2-core machine (`bench/datagen_dedup.py --count
# 20000`), well under the 30 s lease, and runs off the event loop besides.
MAX_ITEMS = 20_000
MAX_EXAMPLES = 10_000


class PathRefused(Exception):
    """A path the caller may not use: `status` 400 (not a path) or 403 (not theirs)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DataGenSpec(BaseModel):
    """What a data-generation job keeps in `jobs.spec`."""

    strategy: str
    num_examples: int
    domain: str | None
    output_dir: str  # as the caller gave it
    output_key: str  # the key prefix in the platform bucket
    output_uri: str
    shard_size: int
    overgenerate: float
    similarity_threshold: float
    examples_per_prompt: int
    max_tokens: int
    temperature: float
    seed_source: str  # "default", "inline" or the seed file's s3:// URI
    seeds: list[Example]
    resumes: int = 0


def home(user: str) -> str:
    return f"{HOME}/{user}"


def resolve_key(path: str, *, user: str, is_admin: bool, bucket: str) -> str:
    """The key (prefix) in `bucket` that `path` names for `user`: a relative path is under
    the caller's home `datagen/<user>/`; `/a/b` or `s3://<bucket>/a/b` is from the bucket's
    root, where a user may use only their home and an admin any key. PathRefused when it
    is not a clean path (400) or not the caller's (403)."""
    raw = path.strip()
    if raw.startswith("s3://"):
        named, _, rest = raw.removeprefix("s3://").partition("/")
        if named != bucket:
            raise PathRefused(
                400, "wrong_bucket", f"data generation uses the platform bucket {bucket} only"
            )
        key, relative = rest, False
    elif raw.startswith("/"):
        key, relative = raw[1:], False
    else:
        key, relative = raw, True
    segments = key.rstrip("/").split("/")
    if not key or any(s in (".", "..") or not _SEGMENT.match(s) for s in segments):
        raise PathRefused(
            400,
            "invalid_path",
            f"{path!r} is not a clean path: segments of letters, digits, '.', '_' and '-', "
            "no '.' or '..'",
        )
    if relative:
        segments = [HOME, user, *segments]
    full = "/".join(segments)
    if len(full) > MAX_KEY_CHARS:
        raise PathRefused(400, "invalid_path", f"a path has at most {MAX_KEY_CHARS} characters")
    if not is_admin and (segments[:2] != [HOME, user] or len(segments) < 3):
        raise PathRefused(
            403,
            "path_forbidden",
            f"{path!r} is outside your folder: you may use only {home(user)}/… of the "
            "platform bucket (a relative path is taken there)",
        )
    return full


def item_count(missing: int, overgenerate: float) -> int:
    """Items to run for `missing` examples: more than that, since some answers are
    rejected or near duplicates."""
    return max(math.ceil(missing * overgenerate), 1) if missing > 0 else 0


def sample_examples(
    seeds: Sequence[Example], generated: Sequence[Example], k: int, rng: random.Random
) -> list[Example]:
    """The `k` tasks one prompt shows, in random order: from the seeds and, once the job
    has made some, a quarter (at least one) from its own examples, as the paper mixes
    6 seed and 2 generated tasks of 8."""
    from_generated = min(len(generated), max(k // 4, 1)) if generated else 0
    from_seeds = min(len(seeds), k - from_generated)
    chosen = rng.sample(list(seeds), from_seeds) + rng.sample(list(generated), from_generated)
    rng.shuffle(chosen)
    return chosen


def item_inputs(
    seeds: Sequence[Example],
    generated: Sequence[Example],
    *,
    count: int,
    k: int,
    rng: random.Random,
) -> Iterator[dict[str, Any]]:
    """The inputs of `count` items: each the tasks its prompt shows."""
    for _ in range(count):
        chosen = sample_examples(seeds, generated, k, rng)
        yield {"examples": [example.model_dump() for example in chosen]}


class ResumeRefused(Exception):
    """A job that cannot be resumed (409) and why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def items_to_add(
    *,
    status: str,
    result: dict[str, Any] | None,
    spec: DataGenSpec,
    open_items: int,
    total: int,
) -> int:
    """What resuming a finished job means: its items not yet run (`open_items`, left
    pending by a cancel) run again, and new items are added when those are fewer than
    the examples still missing need (`item_count`), as many as keep the job's `total`
    items within MAX_ITEMS. ResumeRefused for a job still running, one whose shards are
    being written, one that has all its examples, and one with nothing left to run and
    no room for more items."""
    if status in ("pending", "running"):
        raise ResumeRefused("job_running", f"the job is {status}: nothing to resume")
    if result is None:
        raise ResumeRefused(
            "job_finishing", "the job's shards are being written: try again in a moment"
        )
    missing = spec.num_examples - int(result.get("examples", 0))
    if missing <= 0:
        raise ResumeRefused("job_complete", f"the job has its {spec.num_examples} examples already")
    added = min(max(item_count(missing, spec.overgenerate) - open_items, 0), MAX_ITEMS - total)
    if added <= 0 and open_items == 0:
        raise ResumeRefused(
            "too_many_items", f"the job has {total} items, the most one job may have is {MAX_ITEMS}"
        )
    return max(added, 0)


def shard_key(output_key: str, number: int) -> str:
    return f"{output_key}/shard-{number:05d}.jsonl"
