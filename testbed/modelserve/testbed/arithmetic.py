"""A small verifiable task set: arithmetic questions with known answers.

    .venv/bin/python -m modelserve.testbed.arithmetic [--count 100] [--seed 7] > tasks.jsonl

Each line is {"id", "question", "answer"}: sums, differences and products of small
numbers, phrased as a user would ask, the answer an integer. Made from a seed, so the same
command always gives the same set (bench/scaling_quality.py makes it the same way).
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    id: int
    question: str
    answer: str


def tasks(count: int = 100, seed: int = 7) -> list[Task]:
    rng = random.Random(seed)
    made = []
    for index in range(count):
        kind = index % 3
        if kind == 0:
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            question, answer = f"What is {a} + {b}?", a + b
        elif kind == 1:
            a, b = rng.randint(50, 199), rng.randint(10, 49)
            question, answer = f"What is {a} - {b}?", a - b
        else:
            a, b = rng.randint(2, 12), rng.randint(2, 12)
            question, answer = f"What is {a} times {b}?", a * b
        made.append(Task(index, f"{question} Answer with the number only.", str(answer)))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for task in tasks(args.count, args.seed):
        print(json.dumps({"id": task.id, "question": task.question, "answer": task.answer}))


if __name__ == "__main__":
    main()
