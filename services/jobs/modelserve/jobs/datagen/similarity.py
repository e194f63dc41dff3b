"""Near-duplicate instructions, as Self-Instruct (Wang et al., 2022) finds them: ROUGE-L
between token sequences, a new instruction kept only when its similarity to every
instruction already in the pool stays below a threshold (the paper's 0.7).

ROUGE-L rather than character n-grams or MinHash because it is the paper's measure (so its
threshold means what it meant there) and because word order matters for instructions
("convert Celsius to Fahrenheit" is not "convert Fahrenheit to Celsius"); MinHash would only
estimate a set overlap. Tokens are lower-cased runs of letters and digits, as the paper's
`rouge_score` tokeniser makes them (without stemming). The pool stays exact without
comparing every pair: it looks only at instructions that share one of a new one's rarest
words (`InstructionPool`).
"""

from __future__ import annotations

import math
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
    duplicate (ROUGE-L >= threshold) of any of them.

    Exact, and fast enough for tens of thousands: an LCS never exceeds the two
    sequences' multiset overlap, so a near duplicate of `a` shares at least
    `need = ceil(t·|a| / (2 - t))` tokens with it, hence at least one of any
    `|a| - need + 1` of `a`'s tokens. Every instruction is indexed by its tokens (the
    k-th occurrence of a word as its own token, so that sets count like multisets); a
    query looks only at instructions sharing one of its rarest `|a| - need + 1` tokens,
    then checks the length and overlap bounds before computing an LCS."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._entries: list[tuple[list[str], Counter[str]]] = []
        self._exact: set[tuple[str, ...]] = set()
        self._postings: dict[tuple[str, int], list[int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, instruction: str) -> None:
        words = tokens(instruction)
        number = len(self._entries)
        self._entries.append((words, Counter(words)))
        self._exact.add(tuple(words))
        for element in _elements(words):
            self._postings.setdefault(element, []).append(number)

    def most_similar(self, instruction: str) -> float:
        """The highest ROUGE-L of `instruction` against the pool (0 for an empty pool);
        once one reaches the threshold, that one (the search stops there)."""
        words = tokens(instruction)
        if not words:
            return 0.0
        if tuple(words) in self._exact:
            return 1.0
        t = self.threshold
        need = max(math.ceil(t * len(words) / (2 - t) - 1e-9), 1)
        elements = sorted(_elements(words), key=lambda e: len(self._postings.get(e, ())))
        candidates: set[int] = set()
        for element in elements[: len(words) - need + 1]:
            candidates.update(self._postings.get(element, ()))
        counts = Counter(words)
        best = 0.0
        for number in sorted(candidates):
            other, other_counts = self._entries[number]
            total = len(words) + len(other)
            # LCS <= the shorter length and <= the shared tokens.
            if 2 * min(len(words), len(other)) / total < t:
                continue
            if 2 * sum((counts & other_counts).values()) / total < t:
                continue
            best = max(best, rouge_l(words, other))
            if best >= t:
                break
        return best

    def admit(self, instruction: str) -> bool:
        """Add `instruction` unless it is a near duplicate; whether it was added."""
        if self.most_similar(instruction) >= self.threshold:
            return False
        self.add(instruction)
        return True


def _elements(words: Sequence[str]) -> list[tuple[str, int]]:
    """Each word with its occurrence number: ("a", 1), ("b", 1), ("a", 2), …"""
    seen: Counter[str] = Counter()
    elements = []
    for word in words:
        seen[word] += 1
        elements.append((word, seen[word]))
    return elements
