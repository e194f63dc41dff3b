"""Near-duplicate instructions, as Self-Instruct (Wang et al., 2022) finds them: ROUGE-L
between token sequences, a new instruction kept only when its similarity to every
instruction already in the pool stays below a threshold (the paper's 0.7).

ROUGE-L rather than character n-grams or MinHash because it is the paper's measure (so its
threshold means what it meant there) and because word order matters for instructions
("convert Celsius to Fahrenheit" is not "convert Fahrenheit to Celsius"); MinHash would only
estimate a set overlap. Tokens are lower-cased runs of letters and digits, as the paper's
`rouge_score` tokeniser makes them (without stemming). The pool stays exact without
comparing every pair: it looks only at instructions whose rarest words meet a new one's
rarest words (`InstructionPool`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

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


Element = tuple[str, int]


def word_order(instructions: Iterable[str]) -> Counter[Element]:
    """How many of `instructions` hold each word (its k-th occurrence counted apart): the
    order, rarest first, in which an `InstructionPool` over them indexes words."""
    counts: Counter[Element] = Counter()
    for instruction in instructions:
        counts.update(_elements(tokens(instruction)))
    return counts


def need(length: int, threshold: float) -> int:
    """The fewest tokens an instruction of `length` tokens shares with any near duplicate.

    LCS <= the multiset overlap O and ROUGE-L = 2·LCS / (|a| + |b|) >= t give
    O >= t·(|a| + |b|) / 2, and |b| >= LCS gives |b| >= t·|a| / (2 - t); together
    O >= t·|a| / (2 - t). (The 1e-9 keeps a float just above a whole number from
    rounding the bound up past the true one.)"""
    return max(math.ceil(threshold * length / (2 - threshold) - 1e-9), 1)


class InstructionPool:
    """Instructions kept so far; `admit` keeps a new one only when it is not a near
    duplicate (ROUGE-L >= threshold) of any of them.

    Exact, by prefix filtering (as set-similarity joins do, e.g. Xiao et al.'s PPJoin):
    sort every instruction's tokens by one fixed order (`order`: rarest first, the k-th
    occurrence of a word as its own token, so that sets count like multisets). Two
    instructions sharing at least O tokens share a token among the first |a| - O + 1 of
    `a` and the first |b| - O + 1 of `b`; a near duplicate shares at least `need(|a|)` and
    `need(|b|)` (see `need`). So each instruction is indexed by its first
    |b| - need(|b|) + 1 tokens only, a query looks only at instructions indexed under one
    of its first |a| - need(|a|) + 1 tokens, and checks the length and overlap bounds
    before computing an LCS. Any fixed order is exact; the rarest-first one built from the
    instructions to come (`word_order`) makes the prefixes rare words, so that few
    instructions meet. Words missing from `order` count as the rarest."""

    def __init__(self, threshold: float, order: Mapping[Element, int] | None = None) -> None:
        self.threshold = threshold
        self._order: Mapping[Element, int] = order if order is not None else {}
        self._entries: list[tuple[list[str], frozenset[Element]]] = []
        self._exact: set[tuple[str, ...]] = set()
        self._postings: dict[Element, list[int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _prefix(self, words: Sequence[str]) -> list[Element]:
        ranked = sorted(_elements(words), key=lambda e: (self._order.get(e, 0), e))
        return ranked[: len(words) - need(len(words), self.threshold) + 1]

    def add(self, instruction: str) -> None:
        words = tokens(instruction)
        number = len(self._entries)
        self._entries.append((words, frozenset(_elements(words))))
        self._exact.add(tuple(words))
        if words:
            for element in self._prefix(words):
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
        candidates: set[int] = set()
        for element in self._prefix(words):
            candidates.update(self._postings.get(element, ()))
        elements = frozenset(_elements(words))
        best = 0.0
        for number in sorted(candidates):
            other, other_elements = self._entries[number]
            total = len(words) + len(other)
            # LCS <= the shorter length and <= the shared tokens.
            if 2 * min(len(words), len(other)) / total < t:
                continue
            if 2 * len(elements & other_elements) / total < t:
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


def _elements(words: Sequence[str]) -> list[Element]:
    """Each word with its occurrence number: ("a", 1), ("b", 1), ("a", 2), …"""
    seen: Counter[str] = Counter()
    elements = []
    for word in words:
        seen[word] += 1
        elements.append((word, seen[word]))
    return elements
