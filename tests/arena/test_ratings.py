"""The arena's rating math, checked against ratings computed another way (closed forms,
Hunter's MM iteration, Elo by hand) rather than through the module's own code path."""

from __future__ import annotations

import math
from typing import Any

import pytest

from modelserve.gateway.arena.ratings import (
    Fit,
    Outcome,
    Style,
    Vote,
    bradley_terry,
    leaderboard,
    online_elo,
    style_of,
)

LONG = Style(length=2000, headers=0, lists=0, bold=0)
SHORT = Style(length=500, headers=0, lists=0, bold=0)


def votes_of(a: str, b: str, outcome: Outcome, n: int) -> list[Vote]:
    """n identical votes."""
    return [Vote(a, b, outcome)] * n


def mm_ratings(votes: list[Vote], iterations: int = 2_000) -> dict[str, float]:
    """Bradley-Terry by Zermelo's / Hunter's MM iteration, on the Elo scale (mean 1000).

    p_i <- W_i / sum_j n_ij / (p_i + p_j), where W_i counts wins plus half the ties and
    n_ij every vote between i and j.
    """
    models = sorted({v.model_a for v in votes} | {v.model_b for v in votes})
    wins = dict.fromkeys(models, 0.0)
    games: dict[tuple[str, str], int] = {}
    for v in votes:
        if v.outcome == "a":
            wins[v.model_a] += 1.0
        elif v.outcome == "b":
            wins[v.model_b] += 1.0
        else:
            wins[v.model_a] += 0.5
            wins[v.model_b] += 0.5
        for pair in ((v.model_a, v.model_b), (v.model_b, v.model_a)):
            games[pair] = games.get(pair, 0) + 1
    p = dict.fromkeys(models, 1.0)
    for _ in range(iterations):
        p = {
            i: wins[i] / sum(games.get((i, j), 0) / (p[i] + p[j]) for j in models if j != i)
            for i in models
        }
        scale = math.exp(sum(math.log(x) for x in p.values()) / len(p))
        p = {i: x / scale for i, x in p.items()}
    elo = {i: 400.0 * math.log10(x) for i, x in p.items()}
    mean = sum(elo.values()) / len(elo)
    return {i: 1000.0 + r - mean for i, r in elo.items()}


def styled_pair(long_model: str, short_model: str, n: int) -> list[Vote]:
    """n votes where long_model answers at length and wins 3 in 4; sides alternate."""
    assert n % 8 == 0
    quarter = n // 8
    votes: list[Vote] = []
    for _ in range(quarter * 3):
        votes.append(Vote(long_model, short_model, "a", LONG, SHORT))
        votes.append(Vote(short_model, long_model, "b", SHORT, LONG))
    for _ in range(quarter):
        votes.append(Vote(long_model, short_model, "b", LONG, SHORT))
        votes.append(Vote(short_model, long_model, "a", SHORT, LONG))
    return votes


def test_two_models_match_the_closed_form() -> None:
    votes = votes_of("a", "b", "a", 30) + votes_of("a", "b", "b", 10)
    ratings, coefficients = bradley_terry(votes)
    assert coefficients is None
    assert ratings["a"] - ratings["b"] == pytest.approx(400.0 * math.log10(30 / 10), abs=0.5)
    assert (ratings["a"] + ratings["b"]) / 2 == pytest.approx(1000.0, abs=1e-6)


def test_sides_do_not_matter() -> None:
    votes = votes_of("a", "b", "a", 15) + votes_of("b", "a", "b", 15) + votes_of("b", "a", "a", 10)
    ratings, _ = bradley_terry(votes)
    assert ratings["a"] - ratings["b"] == pytest.approx(400.0 * math.log10(30 / 10), abs=0.5)


def test_four_models_match_the_mm_iteration() -> None:
    votes = (
        votes_of("w", "x", "a", 12)
        + votes_of("w", "x", "b", 5)
        + votes_of("w", "x", "tie", 3)
        + votes_of("x", "y", "a", 9)
        + votes_of("x", "y", "b", 7)
        + votes_of("x", "y", "both_bad", 4)
        + votes_of("y", "z", "a", 6)
        + votes_of("y", "z", "b", 8)
        + votes_of("z", "w", "a", 3)
        + votes_of("z", "w", "b", 11)
        + votes_of("z", "w", "tie", 2)
        + votes_of("w", "y", "a", 7)
        + votes_of("w", "y", "b", 2)
        + votes_of("x", "z", "tie", 5)
        + votes_of("x", "z", "a", 4)
        + votes_of("x", "z", "b", 1)
    )
    expected = mm_ratings(votes)
    ratings, _ = bradley_terry(votes)
    assert set(ratings) == set(expected)
    for model, rating in expected.items():
        assert ratings[model] == pytest.approx(rating, abs=0.5), model
    assert sum(ratings.values()) / len(ratings) == pytest.approx(1000.0, abs=1e-6)
    # The spread is real, not a degenerate fit.
    assert max(ratings.values()) - min(ratings.values()) > 100.0


def test_perfect_separation_stays_finite() -> None:
    ratings, _ = bradley_terry(votes_of("a", "b", "a", 30))
    assert math.isfinite(ratings["a"]) and math.isfinite(ratings["b"])
    assert ratings["a"] > ratings["b"]


def test_online_elo_by_hand() -> None:
    votes = [Vote("x", "y", "a"), Vote("y", "z", "tie"), Vote("x", "z", "b")]
    # Vote 1: equal ratings, E = 0.5; x wins: x = 1000 + 32 * 0.5, y = 1000 - 32 * 0.5.
    x, y, z = 1016.0, 984.0, 1000.0
    # Vote 2: draw between y (984) and z (1000).
    e_y = 1 / (1 + 10 ** ((1000 - 984) / 400))
    y, z = 984 + 32 * (0.5 - e_y), 1000 - 32 * (0.5 - e_y)
    # Vote 3: z (model b) beats x (1016).
    e_x = 1 / (1 + 10 ** ((z - 1016) / 400))
    x, z = 1016 + 32 * (0 - e_x), z - 32 * (0 - e_x)
    elo = online_elo(votes)
    assert elo == pytest.approx({"x": x, "y": y, "z": z}, abs=1e-9)
    assert elo["y"] == pytest.approx(984.7364, abs=1e-3)  # 984 + 32 * (0.5 - 0.47698)


def test_online_elo_k_and_base() -> None:
    elo = online_elo([Vote("x", "y", "both_bad"), Vote("x", "y", "a")], k=16.0, base=1500.0)
    # The draw between equals changes nothing; then x wins at E = 0.5: +/- 16 * 0.5.
    assert elo == pytest.approx({"x": 1508.0, "y": 1492.0})


def test_style_control_removes_the_length_advantage() -> None:
    # "long" answers at length in 3 of 4 battles against each rival, "short" in 1 of 4; the
    # longer answer wins 3 times in 4 whoever gives it, so the models are equal otherwise.
    votes = (
        styled_pair("long", "short", 120)
        + styled_pair("short", "long", 40)
        + styled_pair("long", "mid", 80)
        + styled_pair("mid", "long", 40)
        + styled_pair("mid", "short", 80)
        + styled_pair("short", "mid", 40)
    )
    plain, none = bradley_terry(votes)
    assert none is None
    assert plain["long"] - plain["short"] > 80.0

    controlled, coefficients = bradley_terry(votes, style_control=True)
    assert coefficients is not None
    assert set(coefficients) == {"length", "headers", "lists", "bold"}
    assert max(controlled.values()) - min(controlled.values()) < 3.0
    # The length column is +/-1 after standardising, and the longer answer wins 3:1.
    assert coefficients["length"] == pytest.approx(math.log(3.0), abs=0.01)
    assert coefficients["headers"] == pytest.approx(0.0, abs=1e-6)


def test_style_control_without_styles_changes_nothing() -> None:
    votes = votes_of("a", "b", "a", 30) + votes_of("a", "b", "b", 10)
    plain, _ = bradley_terry(votes)
    controlled, coefficients = bradley_terry(votes, style_control=True)
    assert controlled == pytest.approx(plain, abs=0.01)
    assert coefficients == pytest.approx(dict.fromkeys(coefficients or {}, 0.0), abs=1e-6)


def test_style_of_markdown() -> None:
    text = (
        "# Title\n"
        "Some **bold** text and __more__.\n"
        "## Section\n"
        "- one\n"
        "- two\n"
        "* three\n"
        "  + nested\n"
        "1. first\n"
        "2) second\n"
        "#not a header\n"
        "####### seven is too many\n"
        "-not an item\n"
        "---\n"
        "**bold** at the start, **not closed\n"
    )
    assert style_of(text) == Style(length=len(text), headers=2, lists=6, bold=3)
    assert style_of("") == Style(length=0, headers=0, lists=0, bold=0)


def three_models(scale: int) -> list[Vote]:
    """a well ahead of b and c, who are even."""
    return (
        votes_of("a", "b", "a", 9 * scale)
        + votes_of("a", "b", "b", 1 * scale)
        + votes_of("c", "a", "b", 9 * scale)
        + votes_of("c", "a", "a", 1 * scale)
        + votes_of("b", "c", "a", 5 * scale)
        + votes_of("b", "c", "b", 5 * scale)
        + votes_of("b", "c", "tie", 2 * scale)
    )


def test_bootstrap_intervals_and_ranks() -> None:
    board = leaderboard(three_models(4), rounds=30, seed=1)
    assert board.votes == 32 * 4
    assert board.bootstrap_rounds == 30
    assert not board.style_control and board.style_coefficients is None
    assert board.standings[0].model == "a"
    for s in board.standings:
        assert s.lower <= s.rating <= s.upper
        assert s.lower < s.upper
        assert s.rank == 1 + sum(o.lower > s.upper for o in board.standings)
    ranks = {s.model: s.rank for s in board.standings}
    assert ranks == {"a": 1, "b": 2, "c": 2}
    ratings, _ = bradley_terry(three_models(4))
    assert {s.model: s.rating for s in board.standings} == pytest.approx(ratings)


def test_more_votes_narrow_the_intervals() -> None:
    small = leaderboard(three_models(1), rounds=15, seed=0)
    large = leaderboard(three_models(8), rounds=15, seed=0)
    for s, big in zip(small.standings, large.standings, strict=True):
        assert s.model == big.model
        assert big.upper - big.lower < s.upper - s.lower


def test_a_fit_draws_only_the_resamples_it_lacks_and_answers_as_a_fresh_one() -> None:
    """Asked 10, then 4, then 12 rounds, a Fit draws 12 resamples in all, and each board
    is the one a fit of exactly that many rounds gives: cycling `rounds` costs no refits."""
    votes = three_models(2)
    fit = Fit(votes, seed=3)
    for rounds, drawn in ((10, 10), (4, 10), (12, 12), (0, 12)):
        assert fit.leaderboard(rounds) == leaderboard(votes, rounds=rounds, seed=3)
        assert fit.rounds_drawn == drawn
    with pytest.raises(ValueError, match="0 or more"):
        fit.leaderboard(-1)


def test_bootstrap_is_seeded_and_rounds_zero_collapses() -> None:
    votes = three_models(2)
    assert leaderboard(votes, rounds=5, seed=3) == leaderboard(votes, rounds=5, seed=3)
    board = leaderboard(votes, rounds=0)
    assert board.bootstrap_rounds == 0
    for s in board.standings:
        assert s.lower == s.rating == s.upper


def test_a_model_missing_from_resamples() -> None:
    # "rare" has one vote among 29: about a third of the resamples leave it out.
    votes = [*three_models(1)[:-4], Vote("rare", "a", "tie")]
    board = leaderboard(votes, rounds=15, seed=0)
    rare = next(s for s in board.standings if s.model == "rare")
    assert all(math.isfinite(x) for x in (rare.lower, rare.rating, rare.upper))
    assert rare.lower <= rare.upper


def test_counts_and_order() -> None:
    votes = [
        Vote("p", "q", "a"),
        Vote("q", "p", "a"),
        Vote("p", "r", "tie"),
        Vote("r", "q", "both_bad"),
        Vote("p", "q", "a"),
    ]
    board = leaderboard(votes, rounds=0)
    by_model = {s.model: s for s in board.standings}
    p, q, r = by_model["p"], by_model["q"], by_model["r"]
    assert (p.votes, p.wins, p.losses, p.ties) == (4, 2, 1, 1)
    assert (q.votes, q.wins, q.losses, q.ties) == (4, 1, 2, 1)
    assert (r.votes, r.wins, r.losses, r.ties) == (2, 0, 0, 2)
    assert p.win_rate == pytest.approx(2 / 4)
    assert r.win_rate == 0.0
    assert {m: s.elo for m, s in by_model.items()} == pytest.approx(online_elo(votes))
    ratings = [s.rating for s in board.standings]
    assert ratings == sorted(ratings, reverse=True)


def test_equal_ratings_sort_by_name() -> None:
    votes = [Vote("zed", "amy", "tie"), Vote("amy", "zed", "tie")]
    board = leaderboard(votes, rounds=0)
    assert [s.model for s in board.standings] == ["amy", "zed"]
    assert [s.rank for s in board.standings] == [1, 1]


def test_style_control_leaderboard() -> None:
    votes = styled_pair("long", "short", 40) + styled_pair("short", "long", 8)
    board = leaderboard(votes, style_control=True, rounds=5)
    assert board.style_control
    assert board.style_coefficients is not None
    assert board.style_coefficients["length"] > 0.5


def test_empty_input() -> None:
    board = leaderboard([])
    assert board.standings == []
    assert board.votes == 0
    assert bradley_terry([]) == ({}, None)
    assert online_elo([]) == {}
    assert leaderboard([], style_control=True).style_coefficients == {
        "length": 0.0,
        "headers": 0.0,
        "lists": 0.0,
        "bold": 0.0,
    }


def test_a_model_cannot_battle_itself() -> None:
    votes = [Vote("a", "b", "a"), Vote("a", "a", "tie")]
    for call in (bradley_terry, online_elo, leaderboard):
        with pytest.raises(ValueError, match="battle itself"):
            call(votes)


def test_unknown_outcome() -> None:
    outcome: Any = "draw"
    votes = [Vote("a", "b", outcome)]
    for call in (bradley_terry, online_elo, leaderboard):
        with pytest.raises(ValueError, match="unknown outcome 'draw'"):
            call(votes)


def test_negative_rounds() -> None:
    with pytest.raises(ValueError, match="rounds"):
        leaderboard([Vote("a", "b", "a")], rounds=-1)
