"""Final answers: extraction, normalization and the majority vote of self-consistency."""

from __future__ import annotations

import re
import time

import pytest

from modelserve.common.answers import (
    boxed,
    extract_answer,
    last_number,
    majority,
    normalize,
)


def test_boxed_takes_the_last_box_with_nested_braces_whole() -> None:
    text = r"First \boxed{1}, then \boxed{\frac{1}{2}} is the answer."
    assert boxed(text) == r"\frac{1}{2}"
    assert extract_answer(text) == r"\frac{1}{2}"


def test_boxed_skips_a_box_that_never_closes() -> None:
    assert boxed(r"\boxed{42} and then \boxed{oops") == "42"
    assert boxed("no box here") is None


def test_without_a_box_the_last_number_is_the_answer() -> None:
    assert extract_answer("2 + 3 = 5, so we have 5 apples and 1,000.50 dollars") == "1000.5"
    assert last_number("-7 degrees then -3.25") == "-3.25"
    assert extract_answer("no digits at all") is None


def test_a_box_wins_over_a_later_number() -> None:
    assert extract_answer(r"\boxed{12} because 3 * 4 = 12 and 7") == "12"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("1,000", "1000"),
        ("3.0", "3"),
        ("3.50", "3.5"),
        ("-0", "0"),
        ("+5", "5"),
        (" $42$. ", "42"),
        ("$42.$", "42"),
        (".5", "0.5"),
        ("1000000", "1000000"),
        ("x  =   5", "x = 5"),
        (r"\frac{1}{2}", r"\frac{1}{2}"),
        ("1,2", "1,2"),
    ],
)
def test_normalize(raw: str, normal: str) -> None:
    assert normalize(raw) == normal


def test_a_custom_pattern_uses_its_group_and_its_last_match() -> None:
    text = "Answer: 4\nOn second thought... Answer: 4.0"
    assert extract_answer(text, r"Answer:\s*(\S+)") == "4"
    assert extract_answer("Answer: yes", re.compile(r"Answer:\s*(\w+)")) == "yes"


def test_a_custom_pattern_without_a_group_is_used_whole() -> None:
    assert extract_answer("the code is ABC-123 today", r"[A-Z]+-\d+") == "ABC-123"


def test_a_custom_pattern_that_does_not_match_gives_no_answer() -> None:
    # No fallback to the defaults: the model owner said where the answer is.
    assert extract_answer(r"\boxed{5}", r"Answer: (\d+)") is None


def test_majority_picks_the_most_frequent_answer() -> None:
    vote = majority(["4", "5", "5", None, "4", "5"])
    assert vote.answer == "5"
    assert vote.selected == 1
    assert vote.counts == {"4": 2, "5": 3}


def test_majority_tie_goes_to_the_answer_that_appeared_first() -> None:
    assert majority([None, "7", "3", "3", "7"]).answer == "7"
    assert majority([None, "7", "3", "3", "7"]).selected == 1
    assert majority(["3", "7", "7", "3"]).answer == "3"


def test_majority_without_answers_selects_the_first_candidate() -> None:
    vote = majority([None, None])
    assert vote.answer is None
    assert vote.selected == 0
    assert vote.counts == {}
    with pytest.raises(ValueError, match="at least one"):
        majority([])


def test_a_pattern_that_backtracks_without_end_gives_no_answer_in_time() -> None:
    """A user's pattern (an evaluation job's answer_pattern) cannot hold the process:
    `(a|aa)+$` against 60 a's and a b takes 2^60 steps with plain backtracking."""
    started = time.monotonic()
    assert extract_answer("a" * 60 + "b", r"(a|aa)+$") is None
    assert time.monotonic() - started < 2.0
    # Patterns compiled with flags keep them; a group is the answer, else the whole match.
    assert extract_answer("ANSWER: 12", re.compile(r"answer:\s*(\d+)", re.IGNORECASE)) == "12"
    assert extract_answer("x = 3, then x = 4", r"x = \d") == "x = 4"
