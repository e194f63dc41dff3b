"""Final answers: taken out of a text, made comparable, and voted on. Shared by the
gateway's self-consistency and the jobs service's evaluation jobs, so that both judge an
answer the same way.

Extraction: with a pattern, its last match (group 1, or the whole match for a pattern
without groups); without one, the last `\\boxed{...}` (braces balanced, so
`\\boxed{\\frac{1}{2}}` is whole), else the last number. A text with none has no answer.

A pattern may come from a user (an evaluation job's `answer_pattern`) or a server's
owner (`spec.scaling`): it is matched with the `regex` module under a time limit
(PATTERN_SECONDS), so a pattern that backtracks without end gives no answer instead of
holding the process; the text it is matched against is at most MAX_TEXT characters
(its end, where final answers are).

Normalization: surrounding space, `$` and a final period go, inner space runs become
one space, and a number is written one way: "1,000" is "1000", "3.0" is "3", "-0" is "0".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import regex

PATTERN_SECONDS = 0.1
MAX_TEXT = 20_000

_BOXED = re.compile(r"\\boxed\s*\{")
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_GROUPED = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


def boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` whose braces close, or None."""
    for start in reversed([match.end() for match in _BOXED.finditer(text)]):
        depth = 1
        for position in range(start, len(text)):
            if text[position] == "{":
                depth += 1
            elif text[position] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:position]
    return None


def last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def last_match(pattern: re.Pattern[str] | str, text: str) -> str | None:
    """Group 1 of the last match of `pattern` (the whole match without groups); None
    when nothing matches or matching takes longer than PATTERN_SECONDS."""
    source, flags = (
        (pattern.pattern, pattern.flags)
        if isinstance(pattern, re.Pattern)
        else (
            pattern,
            0,
        )
    )
    last = None
    try:
        for match in regex.finditer(source, text, flags=flags, timeout=PATTERN_SECONDS):
            last = match
    except TimeoutError:
        return None
    if last is None:
        return None
    group = last.group(1) if last.re.groups else last.group(0)
    return group if isinstance(group, str) else None


def normalize(answer: str) -> str:
    answer = " ".join(answer.split())
    trimmed = None
    while trimmed != answer:
        trimmed, answer = answer, answer.strip("$ ").removesuffix(".")
    if _GROUPED.fullmatch(answer):
        answer = answer.replace(",", "")
    if not _PLAIN_NUMBER.fullmatch(answer):
        return answer
    try:
        value = Decimal(answer)
    except InvalidOperation:
        return answer
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def extract_answer(text: str, pattern: re.Pattern[str] | str | None = None) -> str | None:
    """The normalized final answer of `text`, or None where it gives none."""
    if pattern is not None:
        found: str | None = last_match(pattern, text[-MAX_TEXT:])
    else:
        found = boxed(text)
        if found is None:
            found = last_number(text)
    if found is None:
        return None
    return normalize(found)


@dataclasses.dataclass(frozen=True)
class Vote:
    """The outcome of a majority vote over candidates' answers."""

    answer: str | None  # None: no candidate gave an answer
    selected: int  # the first candidate that gave the winning answer
    counts: dict[str, int]  # votes per answer, in the order answers first appeared


def majority(answers: Sequence[str | None]) -> Vote:
    """The most frequent answer; candidates without one abstain.

    Tie-break: among answers with equally many votes, the one that appeared first wins,
    so that the same samples always give the same result. Nobody answering selects
    the first candidate.
    """
    if not answers:
        raise ValueError("a vote needs at least one candidate")
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    if not counts:
        return Vote(None, 0, counts)
    # max() keeps the first of equal keys, and dicts keep first-appearance order.
    winner = max(counts, key=lambda answer: counts[answer])
    return Vote(winner, answers.index(winner), counts)
