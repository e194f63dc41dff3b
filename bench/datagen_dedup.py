"""How fast data generation's near-duplicate pool keeps instructions, and whether it keeps
the same ones as comparing every pair.

    .venv/bin/python bench/datagen_dedup.py [--count 20000] [--words zipf|uniform]
        [--check-up-to 2000] [--seed 0]

`--words zipf` (the default) imitates how instructions use words: a task verb ("write",
"list", "explain", ...; a few of them most of the time), then 5-24 words drawn by Zipf's
law (frequency ~ 1/rank) from a 30,000-word vocabulary whose head is English's
commonest words, so that "the", "a", "of", "given", "sentence" recur in most
instructions. `--words uniform` draws 5-20 words evenly from 3,000 rare words (the
optimistic case: few instructions share a rare word). Either way, 30% of the
instructions are an earlier one with one word changed, so near duplicates occur. They
are offered to `InstructionPool(0.7)` one at a time as a job's finisher offers them (the
pool's word order taken from all of them first, as `shards.select` does). Prints the
seconds it took and how many it kept; for counts up to `--check-up-to`, also compares
with keeping by ROUGE-L against every kept instruction.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time

from modelserve.jobs.datagen.similarity import InstructionPool, rouge_l, tokens, word_order

VERBS = [
    "write",
    "generate",
    "explain",
    "give",
    "list",
    "describe",
    "classify",
    "summarize",
    "translate",
    "create",
    "find",
    "identify",
    "suggest",
    "rewrite",
    "name",
    "compare",
    "convert",
    "tell",
    "answer",
    "provide",
    "make",
    "calculate",
    "sort",
]
HEAD = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "for",
    "is",
    "that",
    "on",
    "with",
    "as",
    "it",
    "by",
    "this",
    "be",
    "are",
    "from",
    "or",
    "an",
    "at",
    "which",
    "your",
    "you",
    "what",
    "how",
    "given",
    "following",
    "each",
    "sentence",
    "text",
    "word",
    "number",
    "list",
    "story",
    "paragraph",
    "example",
    "question",
    "answer",
    "article",
    "email",
    "poem",
    "people",
    "time",
    "way",
    "year",
    "day",
    "thing",
    "world",
    "life",
    "hand",
    "part",
    "child",
    "place",
    "work",
    "week",
    "case",
    "point",
    "company",
    "problem",
    "fact",
    "person",
    "information",
    "data",
    "program",
    "function",
    "code",
    "table",
    "reason",
    "idea",
    "topic",
    "three",
    "two",
    "one",
    "short",
    "simple",
    "new",
    "good",
    "best",
    "first",
    "last",
    "long",
    "small",
    "large",
    "different",
    "important",
    "use",
    "using",
    "about",
    "into",
]
VOCABULARY = 30000
ZIPF_S = 1.0


def uniform(count: int, rng: random.Random) -> list[str]:
    words = [f"w{i}" for i in range(3000)] + ["the", "a", "of", "to", "and", "number"] * 50
    return [" ".join(rng.choices(words, k=rng.randint(5, 20))) for _ in range(count)]


def zipf(count: int, rng: random.Random) -> list[str]:
    words = HEAD + [f"w{i}" for i in range(VOCABULARY - len(HEAD))]
    weights = list(itertools.accumulate(1 / rank**ZIPF_S for rank in range(1, len(words) + 1)))
    verb_weights = list(itertools.accumulate(1 / rank for rank in range(1, len(VERBS) + 1)))
    made = []
    for _ in range(count):
        verb = rng.choices(VERBS, cum_weights=verb_weights)[0]
        body = rng.choices(words, cum_weights=weights, k=rng.randint(5, 24))
        made.append(" ".join([verb, *body]))
    return made


def with_near_duplicates(texts: list[str], rng: random.Random) -> list[str]:
    words = sorted({word for text in texts for word in text.split()})
    made: list[str] = []
    for text in texts:
        if made and rng.random() < 0.3:
            changed = rng.choice(made).split()
            changed[rng.randrange(len(changed))] = rng.choice(words)
            made.append(" ".join(changed))
        else:
            made.append(text)
    return made


def every_pair(texts: list[str], threshold: float) -> list[str]:
    kept: list[str] = []
    for text in texts:
        if all(rouge_l(tokens(text), tokens(other)) < threshold for other in kept):
            kept.append(text)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--words", choices=["zipf", "uniform"], default="zipf")
    parser.add_argument("--check-up-to", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    made = zipf(args.count, rng) if args.words == "zipf" else uniform(args.count, rng)
    texts = with_near_duplicates(made, rng)
    started = time.perf_counter()
    pool = InstructionPool(0.7, word_order(texts))
    kept = [text for text in texts if pool.admit(text)]
    seconds = time.perf_counter() - started
    print(f"{args.count} {args.words} instructions: {len(kept)} kept in {seconds:.2f} s")
    if args.count <= args.check_up_to:
        same = every_pair(texts, 0.7) == kept
        print(f"the same as comparing every pair: {same}")


if __name__ == "__main__":
    main()
