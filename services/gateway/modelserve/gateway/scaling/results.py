"""What an algorithm returns, its options, and the meter that counts its calls and time."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from modelserve.common.modelserve import Algorithm
from modelserve.gateway.scaling.concurrency import gather_all
from modelserve.gateway.scaling.lm import Generations, Prompt, Usage, total
from modelserve.gateway.scaling.rewards import Attempt, Reward


@dataclasses.dataclass(frozen=True)
class Options:
    """How the algorithms generate; each reads the fields it needs."""

    # Per candidate (best-of-N, self-consistency); the cap on a whole answer's tokens
    # for the step-wise algorithms, where the server reports them.
    max_tokens: int | None = None
    temperature: float | None = None  # None: the server's default
    stop: tuple[str, ...] = ()  # the client's stop sequences
    # Self-consistency: where the final answer is (see answers.extract_answer).
    answer_pattern: re.Pattern[str] | str | None = None
    # Particle filtering and beam search.
    step_delimiter: str = "\n\n"
    max_steps: int = 16
    step_max_tokens: int = 256
    beam_width: int | None = None  # None: floor(sqrt(budget))
    resample_temperature: float = 1.0
    # Particle filtering: resample by softmax of logit(score) (scores that are
    # probabilities, as its_hub does) or of the scores themselves. None: logit when
    # every score lies in [0, 1].
    logit_weights: bool | None = None


DEFAULT_OPTIONS = Options()


@dataclasses.dataclass(frozen=True)
class Candidate:
    text: str
    score: float | None = None  # the reward; self-consistency: its answer's share of votes
    answer: str | None = None  # self-consistency: the extracted final answer
    finish_reason: str | None = None
    steps: int = 0  # step-wise algorithms: the answer's steps


@dataclasses.dataclass(frozen=True)
class Result:
    algorithm: Algorithm
    candidates: tuple[Candidate, ...]
    selected: int
    generation: Usage  # the calls to the model that generates
    reward: Usage  # the calls of the reward (a reward model or a judge)
    generation_seconds: float
    reward_seconds: float
    rounds: int = 1  # rounds of generation: steps for the step-wise algorithms

    @property
    def chosen(self) -> Candidate:
        return self.candidates[self.selected]

    @property
    def text(self) -> str:
        return self.chosen.text

    @property
    def upstream_calls(self) -> int:
        return self.generation.calls + self.reward.calls


class Meter:
    """The usage and time of one run, by phase: generation and reward."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.generation = Usage()
        self.reward = Usage()
        self.generation_seconds = 0.0
        self.reward_seconds = 0.0

    async def generate(
        self, calls: Iterable[Coroutine[Any, Any, Generations]]
    ) -> list[Generations]:
        """The calls' results, run together (and timed together: they overlap)."""
        started = self._clock()
        try:
            done = await gather_all(calls)
        finally:
            self.generation_seconds += self._clock() - started
        self.generation += total(part.usage for part in done)
        return done

    async def score(
        self, reward: Reward, prompt: Prompt, attempts: Sequence[Attempt]
    ) -> tuple[float, ...]:
        if not attempts:
            return ()
        started = self._clock()
        try:
            scores = await reward.score(prompt, attempts)
        finally:
            self.reward_seconds += self._clock() - started
        if len(scores.values) != len(attempts):
            raise ValueError(f"the reward gave {len(scores.values)} scores for {len(attempts)}")
        self.reward += scores.usage
        return scores.values

    def result(
        self,
        algorithm: Algorithm,
        candidates: Sequence[Candidate],
        selected: int,
        rounds: int = 1,
    ) -> Result:
        return Result(
            algorithm=algorithm,
            candidates=tuple(candidates),
            selected=selected,
            generation=self.generation,
            reward=self.reward,
            generation_seconds=self.generation_seconds,
            reward_seconds=self.reward_seconds,
            rounds=rounds,
        )


def best_index(scores: Sequence[float]) -> int:
    """The index of the highest score; the first of equal ones."""
    return max(range(len(scores)), key=lambda index: scores[index])
