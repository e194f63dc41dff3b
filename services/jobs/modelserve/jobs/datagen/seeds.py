"""The seed set a job starts from: given inline, read from a JSONL file in the platform
store, or the small set shipped with this package (`default_seeds`: thirteen varied
tasks, a few of them arithmetic)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import ValidationError

from modelserve.jobs.datagen.default_seeds import DEFAULT_SEEDS
from modelserve.jobs.datagen.examples import Example

MAX_SEEDS = 1000
MAX_SEED_FILE_BYTES = 5 << 20


class BadSeeds(ValueError):
    """A seed set that cannot be used; the message says which line and why."""


def default_seeds() -> list[Example]:
    return [Example.model_validate(task) for task in DEFAULT_SEEDS]


def parse_seed_lines(lines: Iterable[str]) -> list[Example]:
    """Seeds from JSONL lines, each an object with `instruction` and `output` (and an
    optional `input`); blank lines are skipped. BadSeeds names the first bad line."""
    seeds: list[Example] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as error:
            raise BadSeeds(f"line {number} is not JSON: {error}") from error
        seeds.append(seed(value, f"line {number}"))
        if len(seeds) > MAX_SEEDS:
            raise BadSeeds(f"a seed set has at most {MAX_SEEDS} tasks")
    if not seeds:
        raise BadSeeds("the seed set is empty")
    return seeds


def seed(value: object, where: str) -> Example:
    """One seed task from a JSON value; BadSeeds says what is wrong with it at `where`."""
    if not isinstance(value, dict):
        raise BadSeeds(f"{where}: a seed task is an object with `instruction` and `output`")
    try:
        return Example.model_validate(value)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise BadSeeds(f"{where}: {problems}") from error
