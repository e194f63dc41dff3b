"""From finished items to the job's examples: in item order, each parsed example is kept
unless its instruction is a near duplicate of a seed's or of one kept before it, until
`num_examples` are kept. Item order makes the result the same however the items ran, and
a resumed job's new items (later indexes) only add to what was kept before."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from modelserve.jobs.datagen.examples import Example
from modelserve.jobs.datagen.similarity import InstructionPool


class Assembler:
    def __init__(self, seeds: Sequence[Example], num_examples: int, threshold: float) -> None:
        self.num_examples = num_examples
        self.pool = InstructionPool(threshold)
        for seed in seeds:
            self.pool.add(seed.instruction)
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
        if len(self.kept) >= self.num_examples:
            self.surplus += 1
            return
        try:
            example = Example.model_validate(output["example"])
        except ValidationError:
            self.rejected["unparsable"] += 1
            return
        if not self.pool.admit(example.instruction):
            self.rejected["near_duplicate"] += 1
            return
        self.kept.append(example)


def chunks(examples: Sequence[Example], size: int) -> Iterator[Sequence[Example]]:
    """The examples of each shard, `size` per shard (the last may have fewer)."""
    for start in range(0, len(examples), size):
        yield examples[start : start + size]
