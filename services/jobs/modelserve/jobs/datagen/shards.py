"""From finished items to the job's examples: in item order, each parsed example is kept
unless its instruction is a near duplicate of a seed's or of one kept before it, until
`num_examples` are kept. Item order makes the result the same however the items ran, and
a resumed job's new items (later indexes) only add to what was kept before."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modelserve.jobs.datagen.examples import Example
from modelserve.jobs.datagen.similarity import InstructionPool, word_order


class Assembler:
    """`offer` each finished item in index order (cheap: it sorts the items out and
    holds the parsed examples), then `select` (CPU-bound: the near-duplicate pool, run
    off the event loop by the finisher) keeps the examples."""

    def __init__(self, seeds: Sequence[Example], num_examples: int, threshold: float) -> None:
        self.num_examples = num_examples
        self.threshold = threshold
        self.seeds = [seed.instruction for seed in seeds]
        self.candidates: list[Example] = []
        self.kept: list[Example] = []
        self.rejected: Counter[str] = Counter()
        self.items_failed = 0
        self.surplus = 0  # examples not looked at: num_examples were kept already

    def offer(self, outcome: Mapping[str, Any]) -> None:
        """One finished item (`state`, `output`), in index order."""
        if outcome["state"] != "done":
            self.items_failed += 1
            return
        output = outcome["output"] or {}
        if output.get("rejected") or not output.get("example"):
            self.rejected[str(output.get("rejected") or "unparsable")] += 1
            return
        try:
            example = Example.model_validate(output["example"])
        except ValidationError:
            self.rejected["unparsable"] += 1
            return
        self.candidates.append(example)

    def instructions(self) -> list[str]:
        return [example.instruction for example in self.candidates]

    def settle(self, selection: Selection) -> None:
        """Take `select`'s answer over `instructions()`: the examples kept, the near
        duplicates dropped, and those left unexamined."""
        self.kept = [self.candidates[number] for number in selection.kept]
        if selection.near_duplicates:
            self.rejected["near_duplicate"] += selection.near_duplicates
        self.surplus = len(self.candidates) - selection.examined


@dataclass(frozen=True)
class Selection:
    kept: list[int]
    """Indexes of the instructions kept, in order."""
    near_duplicates: int
    examined: int
    """How many of the instructions were looked at (the rest came after the last kept)."""


def select(seeds: list[str], instructions: list[str], threshold: float, limit: int) -> Selection:
    """Keep instructions in order unless a near duplicate of a seed's or of one kept
    before, until `limit` are kept. Pure and picklable: it runs in another process."""
    pool = InstructionPool(threshold, word_order([*seeds, *instructions]))
    for instruction in seeds:
        pool.add(instruction)
    kept: list[int] = []
    near_duplicates = 0
    examined = 0
    for number, instruction in enumerate(instructions):
        if len(kept) >= limit:
            break
        examined += 1
        if pool.admit(instruction):
            kept.append(number)
        else:
            near_duplicates += 1
    return Selection(kept, near_duplicates, examined)


def chunks(examples: Sequence[Example], size: int) -> Iterator[Sequence[Example]]:
    """The examples of each shard, `size` per shard (the last may have fewer)."""
    for start in range(0, len(examples), size):
        yield examples[start : start + size]
