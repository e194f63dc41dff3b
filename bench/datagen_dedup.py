"""How fast data generation's near-duplicate pool keeps instructions, and whether it keeps
the same ones as comparing every pair.

    .venv/bin/python bench/datagen_dedup.py [--count 20000] [--check-up-to 2000] [--seed 0]

Synthetic instructions of 5-20 words from 3,000 rare words and a few common ones ("the",
"a", "of", "number", ...), 30% of them an earlier instruction with one word changed (so
near duplicates occur), offered to `InstructionPool(0.7)` one at a time as a job's
finisher does. Prints the seconds it took and how many it kept; for counts up to
`--check-up-to`, also compares with keeping by ROUGE-L against every kept instruction.
"""

from __future__ import annotations

import argparse
import random
import time

from modelserve.jobs.datagen.similarity import InstructionPool, rouge_l, tokens

COMMON = ["the", "a", "of", "to", "and", "in", "number", "write", "list"]


def instructions(count: int, rng: random.Random) -> list[str]:
    words = [f"w{i}" for i in range(3000)] + COMMON * 50
    made: list[str] = []
    for _ in range(count):
        if made and rng.random() < 0.3:
            changed = rng.choice(made).split()
            changed[rng.randrange(len(changed))] = rng.choice(words)
            made.append(" ".join(changed))
        else:
            made.append(" ".join(rng.choice(words) for _ in range(rng.randint(5, 20))))
    return made


def every_pair(texts: list[str], threshold: float) -> list[str]:
    kept: list[str] = []
    for text in texts:
        if all(rouge_l(tokens(text), tokens(other)) < threshold for other in kept):
            kept.append(text)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--check-up-to", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    texts = instructions(args.count, random.Random(args.seed))
    pool = InstructionPool(0.7)
    started = time.perf_counter()
    kept = [text for text in texts if pool.admit(text)]
    seconds = time.perf_counter() - started
    print(f"{args.count} instructions: {len(kept)} kept in {seconds:.2f} s")
    if args.count <= args.check_up_to:
        same = every_pair(texts, 0.7) == kept
        print(f"the same as comparing every pair: {same}")


if __name__ == "__main__":
    main()
