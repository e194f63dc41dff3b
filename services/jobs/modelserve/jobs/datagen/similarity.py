"""Near-duplicate instructions, as Self-Instruct (Wang et al., 2022) finds them: ROUGE-L
between token sequences, a new instruction kept only when its similarity to every
instruction already in the pool stays below a threshold (the paper's 0.7).

ROUGE-L rather than character n-grams or MinHash because it is the paper's measure (so its
threshold means what it meant there) and because word order matters for instructions
("convert Celsius to Fahrenheit" is not "convert Fahrenheit to Celsius"); MinHash would only
estimate a set overlap. Tokens are lower-cased runs of letters and digits, as the paper's
`rouge_score` tokeniser makes them (without stemming). The pool checks every instruction,
skipping those that a bound shows cannot reach the threshold, so its cost grows with the
square of the examples kept (see docs/data-generation.md for measured figures).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_TOKEN = re.compile(r"[^\W_]+")


def tokens(text: str) -> list[str]:
    """Lower-cased runs of letters and digits."""
    return _TOKEN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F1 of two token sequences: 2·LCS / (|a| + |b|), 0 when either is empty."""
    if not a or not b:
        return 0.0
    return 2 * lcs_length(a, b) / (len(a) + len(b))


class InstructionPool:
    """Instructions kept so far; `admit` keeps a new one only when it is not a near
    duplicate (ROUGE-L >= threshold) of any of them."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._entries: list[tuple[list[str], Counter[str]]] = []
        self._exact: set[tuple[str, ...]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, instruction: str) -> None:
        words = tokens(instruction)
        self._entries.append((words, Counter(words)))
        self._exact.add(tuple(words))

    def most_similar(self, instruction: str) -> float:
        """The highest ROUGE-L of `instruction` against the pool (0 for an empty pool);
        stops early once the threshold is reached."""
        words = tokens(instruction)
        if tuple(words) in self._exact:
            return 1.0 if words else 0.0
        counts = Counter(words)
        best = 0.0
        for other, other_counts in self._entries:
            total = len(words) + len(other)
            # LCS <= shorter length and <= shared tokens: skip pairs that cannot reach it.
            if total == 0 or 2 * min(len(words), len(other)) / total < self.threshold:
                continue
            if 2 * sum((counts & other_counts).values()) / total < self.threshold:
                continue
            best = max(best, rouge_l(words, other))
            if best >= self.threshold:
                break
        return best

    def admit(self, instruction: str) -> bool:
        """Add `instruction` unless it is a near duplicate; whether it was added."""
        if self.most_similar(instruction) >= self.threshold:
            return False
        self.add(instruction)
        return True
