"""Arena ratings: Bradley-Terry by maximum likelihood, bootstrap intervals, online Elo.

Bradley-Terry, fitted as LMSYS/FastChat's arena fits it: a logistic regression without
intercept. Each vote is a row with +1 in model_a's column and -1 in model_b's, so that
P(a wins) = sigmoid(beta_a - beta_b). Outcome "a" is y=1, "b" is y=0; "tie" and "both_bad"
count as two rows of weight 0.5, one with y=1 and one with y=0. We minimise the weighted
negative log-likelihood (stable log-sigmoid via np.logaddexp) with scipy's L-BFGS-B and an
analytic gradient, plus a tiny L2 penalty (1e-6 times the sum of squared coefficients). The
penalty does not change the answer in any visible way: it only pins the free constant
(adding c to every beta changes nothing else) and keeps the fit finite when the data are
perfectly separated (a model that won every vote).

The design is kept in index form: for vote v, the row is +1 at column ia[v] and -1 at
column ib[v] (plus its style columns), so the linear term is beta[ia] - beta[ib] + S @ gamma
and the gradient is gathered back with np.bincount. A tie is one row whose target is 0.5;
its loss 0.5*logsig(z) + 0.5*logsig(-z) is exactly that of the two half-weight rows.

Ratings are put on the Elo scale: rating = 1000 + (400 / ln 10) * (beta - mean beta), so
P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400)) and the mean rating is 1000.

Style control (LMSYS's): one more column per style feature (length, headers, lists, bold),
the normalised difference (f_a - f_b) / (f_a + f_b) (0 when both are 0), standardised over
the votes that have a style (mean 0, std 1; a column with std 0 stays 0). Votes without a
style have 0 in those columns, i.e. "no style difference". The model betas and the style
gammas are fitted together; ratings come from the betas only, and the gammas are reported
by feature name (positive: that feature wins votes by itself).

Intervals: `rounds` bootstrap resamples of the votes (with replacement, by index, on the
design built once; the style columns keep the standardisation of the full data), each
refitted; a model's lower and upper are the 2.5th and 97.5th percentiles of its rating over
the rounds in which it appears. Rank follows LMSYS: 1 + the number of models whose lower
bound is above this model's upper bound.

Online Elo is the classic sequential update, in vote order, with ties and both_bad as draws.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

Outcome = Literal["a", "b", "tie", "both_bad"]

OUTCOMES: tuple[str, ...] = get_args(Outcome)
STYLE_FEATURES: tuple[str, ...] = ("length", "headers", "lists", "bold")
BASE_RATING = 1000.0
ELO_SCALE = 400.0 / math.log(10.0)  # beta (natural-log odds) to Elo points
L2_PENALTY = 1e-6

_HEADER = re.compile(r"^#{1,6} ", re.MULTILINE)
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d+[.)]) ", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclasses.dataclass(frozen=True)
class Style:
    """Style covariates of one side's answers (all assistant turns of the battle together)."""

    length: int  # characters of the answers
    headers: int  # markdown headers (lines starting with 1-6 '#' and a space)
    lists: int  # markdown list items (lines starting with '-', '*', '+' or '1.' etc. and a space)
    bold: int  # **bold** or __bold__ spans


def style_of(text: str) -> Style:
    """The style covariates of a text (list items may be indented)."""
    return Style(
        length=len(text),
        headers=len(_HEADER.findall(text)),
        lists=len(_LIST_ITEM.findall(text)),
        bold=len(_BOLD.findall(text)),
    )


@dataclasses.dataclass(frozen=True)
class Vote:
    """One battle: two models and the user's verdict."""

    model_a: str
    model_b: str
    outcome: Outcome
    style_a: Style | None = None
    style_b: Style | None = None


@dataclasses.dataclass(frozen=True)
class Standing:
    """One model's row of the leaderboard."""

    model: str
    rating: float  # Bradley-Terry, Elo scale
    lower: float  # bootstrap 2.5th percentile of the rating
    upper: float  # bootstrap 97.5th percentile
    rank: int  # 1 + number of models whose `lower` is above this model's `upper`
    votes: int  # votes that involve the model
    wins: int
    losses: int
    ties: int  # tie and both_bad
    win_rate: float  # wins / votes (0.0 with no votes)
    elo: float  # online Elo


@dataclasses.dataclass(frozen=True)
class Leaderboard:
    """The whole table."""

    standings: list[Standing]  # sorted by rating, best first (ties broken by model name)
    votes: int  # votes used
    bootstrap_rounds: int
    style_control: bool
    style_coefficients: dict[str, float] | None  # by feature, with style control; else None


@dataclasses.dataclass(frozen=True)
class _Design:
    """The votes as arrays: model columns, target (1, 0 or 0.5), style columns."""

    models: list[str]
    ia: IntArray
    ib: IntArray
    target: FloatArray
    style: FloatArray  # shape (votes, features); (votes, 0) without style control


def _check(votes: Sequence[Vote]) -> None:
    """Raise ValueError on a self-battle or an unknown outcome."""
    for i, vote in enumerate(votes):
        if vote.model_a == vote.model_b:
            raise ValueError(f"vote {i}: a model cannot battle itself ({vote.model_a!r})")
        if vote.outcome not in OUTCOMES:
            raise ValueError(
                f"vote {i}: unknown outcome {vote.outcome!r} (expected one of {OUTCOMES})"
            )


def _score(outcome: Outcome) -> float:
    """Model a's score: 1 for a win, 0 for a loss, 0.5 for tie and both_bad."""
    return {"a": 1.0, "b": 0.0}.get(outcome, 0.5)


def _features(style: Style | None) -> list[int]:
    """A style's features in STYLE_FEATURES order."""
    return [getattr(style, f) for f in STYLE_FEATURES]


def _style_columns(votes: Sequence[Vote]) -> FloatArray:
    """Standardised normalised style differences, 0 for votes without a style."""
    columns = np.zeros((len(votes), len(STYLE_FEATURES)))
    styled = [i for i, v in enumerate(votes) if v.style_a is not None and v.style_b is not None]
    if not styled:
        return columns
    a = np.array([_features(votes[i].style_a) for i in styled], dtype=np.float64)
    b = np.array([_features(votes[i].style_b) for i in styled], dtype=np.float64)
    total = a + b
    diff = np.divide(a - b, total, out=np.zeros_like(total), where=total != 0)
    std = diff.std(axis=0)
    scaled = np.divide(diff - diff.mean(axis=0), std, out=np.zeros_like(diff), where=std > 0)
    columns[styled] = scaled
    return columns


def _design(votes: Sequence[Vote], style_control: bool) -> _Design:
    """Build the arrays of the fit once (models in sorted order)."""
    models = sorted({v.model_a for v in votes} | {v.model_b for v in votes})
    column = {m: i for i, m in enumerate(models)}
    return _Design(
        models=models,
        ia=np.array([column[v.model_a] for v in votes], dtype=np.intp),
        ib=np.array([column[v.model_b] for v in votes], dtype=np.intp),
        target=np.array([_score(v.outcome) for v in votes], dtype=np.float64),
        style=_style_columns(votes) if style_control else np.zeros((len(votes), 0)),
    )


def _fit(design: _Design, weight: FloatArray, start: FloatArray) -> FloatArray:
    """Penalised maximum likelihood: the betas of the models, then the style gammas."""
    m = len(design.models)
    if not m:
        return start.copy()
    ia, ib, y, s = design.ia, design.ib, design.target, design.style

    def loss(theta: FloatArray) -> tuple[float, FloatArray]:
        beta, gamma = theta[:m], theta[m:]
        z = beta[ia] - beta[ib] + s @ gamma
        # -[y log sigmoid(z) + (1-y) log sigmoid(-z)], stably.
        nll = weight @ (y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z))
        dz = weight * (0.5 * (1.0 + np.tanh(0.5 * z)) - y)  # weight * (sigmoid(z) - y)
        grad = np.empty_like(theta)
        grad[:m] = np.bincount(ia, dz, m) - np.bincount(ib, dz, m)
        grad[m:] = s.T @ dz
        value = float(nll) + L2_PENALTY * float(theta @ theta)
        return value, grad + 2.0 * L2_PENALTY * theta

    result = minimize(
        loss,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 1000, "ftol": 1e-11, "gtol": 1e-7},
    )
    theta: FloatArray = np.asarray(result.x, dtype=np.float64)
    return theta


def _to_elo(beta: FloatArray) -> FloatArray:
    """Betas (log-odds) to the Elo scale, centred on a mean of 1000."""
    if not beta.size:
        return beta.copy()
    rating: FloatArray = BASE_RATING + ELO_SCALE * (beta - beta.mean())
    return rating


def bradley_terry(
    votes: Sequence[Vote], *, style_control: bool = False
) -> tuple[dict[str, float], dict[str, float] | None]:
    """Ratings by maximum likelihood (and the style coefficients with style control)."""
    _check(votes)
    design = _design(votes, style_control)
    m = len(design.models)
    theta = _fit(design, np.ones(len(votes)), np.zeros(m + design.style.shape[1]))
    ratings = _to_elo(theta[:m])
    coefficients = (
        dict(zip(STYLE_FEATURES, map(float, theta[m:]), strict=True)) if style_control else None
    )
    return dict(zip(design.models, map(float, ratings), strict=True)), coefficients


def online_elo(votes: Sequence[Vote], *, k: float = 32.0, base: float = 1000.0) -> dict[str, float]:
    """Elo updated vote by vote, in the order given (tie and both_bad are a draw: 0.5)."""
    _check(votes)
    elo: dict[str, float] = {}
    for vote in votes:
        ra = elo.setdefault(vote.model_a, base)
        rb = elo.setdefault(vote.model_b, base)
        expected = 1.0 / (1.0 + 10.0 ** ((rb - ra) / 400.0))
        delta = k * (_score(vote.outcome) - expected)
        elo[vote.model_a] = ra + delta
        elo[vote.model_b] = rb - delta
    return elo


def _percentiles(rating: FloatArray, samples: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per model, the 2.5th and 97.5th percentiles of its rating over the resamples in
    which it appears (its rating where it appears in none)."""
    lower, upper = rating.copy(), rating.copy()
    for j in range(len(rating)):
        seen = samples[~np.isnan(samples[:, j]), j]
        if seen.size:
            lower[j], upper[j] = np.percentile(seen, [2.5, 97.5])
    return lower, upper


class Fit:
    """The ratings of one set of votes, and the bootstrap resamples drawn for it so far.

    Resamples are drawn in order from one numpy Generator seeded by `seed`, so the first
    r of them are the same however many were drawn: `leaderboard(rounds)` draws only
    those it lacks, and answers the same as a fit that drew exactly `rounds`. A caller
    keeping a Fit pays for at most the most rounds ever asked, whatever the order in
    which different `rounds` are asked."""

    def __init__(self, votes: Sequence[Vote], *, style_control: bool = False, seed: int = 0):
        _check(votes)
        self.votes = len(votes)
        self.style_control = style_control
        self._design = _design(votes, style_control)
        m = len(self._design.models)
        self._theta = _fit(
            self._design, np.ones(len(votes)), np.zeros(m + self._design.style.shape[1])
        )
        self._rng = np.random.default_rng(seed)
        self._samples: list[FloatArray] = []
        self._elo = online_elo(votes)
        models = self._design.models
        self._wins, self._losses, self._ties = (dict.fromkeys(models, 0) for _ in range(3))
        for vote in votes:
            if vote.outcome == "a":
                self._wins[vote.model_a] += 1
                self._losses[vote.model_b] += 1
            elif vote.outcome == "b":
                self._wins[vote.model_b] += 1
                self._losses[vote.model_a] += 1
            else:
                self._ties[vote.model_a] += 1
                self._ties[vote.model_b] += 1

    @property
    def rounds_drawn(self) -> int:
        return len(self._samples)

    def _draw(self, rounds: int) -> None:
        design, n, m = self._design, len(self._design.target), len(self._design.models)
        while m and len(self._samples) < rounds:
            weight = np.bincount(self._rng.integers(0, n, size=n), minlength=n).astype(np.float64)
            present = (np.bincount(design.ia, weight, m) + np.bincount(design.ib, weight, m)) > 0
            beta = _fit(design, weight, self._theta)[:m]
            sample = np.full(m, np.nan)
            sample[present] = _to_elo(beta[present])
            self._samples.append(sample)

    def leaderboard(self, rounds: int) -> Leaderboard:
        """The whole table, with intervals from the first `rounds` resamples (0:
        lower=upper=rating)."""
        if rounds < 0:
            raise ValueError(f"rounds must be 0 or more, not {rounds}")
        self._draw(rounds)
        models, m = self._design.models, len(self._design.models)
        rating = _to_elo(self._theta[:m])
        drawn = self._samples[:rounds]
        samples = np.array(drawn) if drawn else np.empty((0, m))
        lower, upper = _percentiles(rating, samples)
        standings = []
        for j, model in enumerate(models):
            wins, losses, ties = self._wins[model], self._losses[model], self._ties[model]
            played = wins + losses + ties
            standings.append(
                Standing(
                    model=model,
                    rating=float(rating[j]),
                    lower=float(lower[j]),
                    upper=float(upper[j]),
                    rank=1 + int(np.count_nonzero(lower > upper[j])),
                    votes=played,
                    wins=wins,
                    losses=losses,
                    ties=ties,
                    win_rate=wins / played if played else 0.0,
                    elo=self._elo[model],
                )
            )
        standings.sort(key=lambda s: (-s.rating, s.model))
        coefficients = (
            dict(zip(STYLE_FEATURES, map(float, self._theta[m:]), strict=True))
            if self.style_control
            else None
        )
        return Leaderboard(
            standings=standings,
            votes=self.votes,
            bootstrap_rounds=rounds,
            style_control=self.style_control,
            style_coefficients=coefficients,
        )


def leaderboard(
    votes: Sequence[Vote], *, style_control: bool = False, rounds: int = 100, seed: int = 0
) -> Leaderboard:
    """The whole table; `rounds` bootstrap resamples of the votes (with replacement, numpy
    Generator seeded by `seed`), each refitted, for the intervals. rounds=0: lower=upper=rating.
    """
    return Fit(votes, style_control=style_control, seed=seed).leaderboard(rounds)
