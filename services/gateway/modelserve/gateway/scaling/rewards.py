"""Rewards: how good a candidate answer, or the first steps of one, looks.

A `Reward` gives one score per `Attempt` (higher is better); best-of-N scores whole
answers, particle filtering and beam search score partial ones (`partial=True`) after
every step. A `ProcessReward` gives a score per step (`reward_model.ProcessRewardModel`);
`aggregate` turns those into one.

Here: `MeanLogprob` (the sample's mean token log-probability, no upstream call) and
`LlmJudge` (a served model asked whether the answer is correct: P("yes")).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from modelserve.common.modelserve import Aggregation
from modelserve.gateway.scaling.concurrency import gather_all
from modelserve.gateway.scaling.lm import Prompt, Usage, total
from modelserve.gateway.scaling.openai_lm import (
    CHAT_PATH,
    MalformedAnswer,
    Post,
    call_usage,
    message_text,
)


class RewardError(Exception):
    """A reward cannot score these candidates (e.g. the server gave no log-probabilities)."""


@dataclasses.dataclass(frozen=True)
class Attempt:
    """A candidate answer as a reward sees it."""

    text: str
    steps: tuple[str, ...] = ()  # the step-wise algorithms' steps; () for a whole answer
    token_logprobs: tuple[float, ...] | None = None
    partial: bool = False  # only the first steps of an answer


@dataclasses.dataclass(frozen=True)
class Scores:
    values: tuple[float, ...]
    usage: Usage = dataclasses.field(default_factory=Usage)


@dataclasses.dataclass(frozen=True)
class StepScores:
    values: tuple[tuple[float, ...], ...]  # per attempt, per step
    usage: Usage = dataclasses.field(default_factory=Usage)


class Reward(Protocol):
    # Whether candidates must be generated with their token log-probabilities.
    @property
    def needs_logprobs(self) -> bool: ...

    async def score(self, prompt: Prompt, attempts: Sequence[Attempt]) -> Scores: ...


class ProcessReward(Protocol):
    async def score_steps(self, prompt: Prompt, attempts: Sequence[Attempt]) -> StepScores: ...


def aggregate(scores: Sequence[float], how: Aggregation) -> float:
    """One score from a candidate's step scores."""
    if not scores:
        raise ValueError("no step scores to aggregate")
    match how:
        case Aggregation.MIN:
            return min(scores)
        case Aggregation.LAST:
            return scores[-1]
        case Aggregation.PRODUCT:
            return math.prod(scores)
        case Aggregation.MEAN:
            return math.fsum(scores) / len(scores)


class MeanLogprob:
    """The mean log-probability of the candidate's tokens: how sure the model was.

    An empty candidate scores -inf. Candidates generated without log-probabilities (a
    server that does not return them) are a `RewardError`.
    """

    needs_logprobs = True

    async def score(self, prompt: Prompt, attempts: Sequence[Attempt]) -> Scores:
        return Scores(tuple(mean_logprob(attempt) for attempt in attempts))


def mean_logprob(attempt: Attempt) -> float:
    if attempt.token_logprobs is None:
        raise RewardError("the model server returned no log-probabilities to score with")
    if not attempt.token_logprobs:
        return -math.inf
    return math.fsum(attempt.token_logprobs) / len(attempt.token_logprobs)


JUDGE_PROMPT = (
    "Here is a question and a proposed answer.\n\n"
    "Question:\n{question}\n\nProposed answer:\n{answer}\n\n"
    "Is the proposed answer correct? Reply with yes or no."
)
JUDGE_PARTIAL_PROMPT = (
    "Here is a question and the first steps of a proposed solution.\n\n"
    "Question:\n{question}\n\nFirst steps:\n{answer}\n\n"
    "Are these steps correct so far? Reply with yes or no."
)


class LlmJudge:
    """A served model asked, per candidate, whether it is correct; the score is
    P(yes) / (P(yes) + P(no)) from the log-probabilities of the first answer token that
    has either among its most likely ones. 0.5 when none has (the judge said something
    else): no opinion rather than a verdict.
    """

    needs_logprobs = False

    def __init__(
        self,
        post: Post,
        *,
        model: str,
        max_concurrency: int = 8,
        top_logprobs: int = 20,
        max_tokens: int = 4,
        prompt: str = JUDGE_PROMPT,
        partial_prompt: str = JUDGE_PARTIAL_PROMPT,
    ) -> None:
        self.model = model
        self._post = post
        self._top_logprobs = top_logprobs
        self._max_tokens = max_tokens
        self._prompt = prompt
        self._partial_prompt = partial_prompt
        self._slots = asyncio.Semaphore(max_concurrency)

    async def score(self, prompt: Prompt, attempts: Sequence[Attempt]) -> Scores:
        question = question_text(prompt)
        judged = await gather_all(self._judge(question, attempt) for attempt in attempts)
        return Scores(tuple(value for value, _ in judged), total(usage for _, usage in judged))

    async def _judge(self, question: str, attempt: Attempt) -> tuple[float, Usage]:
        template = self._partial_prompt if attempt.partial else self._prompt
        body = {
            "model": self.model,
            "messages": [
                {"role": "user", "content": template.format(question=question, answer=attempt.text)}
            ],
            "max_tokens": self._max_tokens,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": self._top_logprobs,
            "stream": False,
        }
        async with self._slots:
            answer = await self._post(CHAT_PATH, body)
        counted = call_usage(answer)
        return p_yes(answer), counted


def question_text(prompt: Prompt) -> str:
    """The conversation a candidate answers, as text: the user's message alone, or each
    turn with its role where there are several."""
    turns = [message for message in prompt.messages if message.get("role") != "system"]
    if len(turns) == 1:
        return message_text(turns[0])
    return "\n\n".join(f"{turn.get('role', 'user')}: {message_text(turn)}" for turn in turns)


def p_yes(answer: Mapping[str, Any]) -> float:
    """P(yes) normalized over yes and no, from a chat answer with top_logprobs."""
    try:
        positions = answer["choices"][0]["logprobs"]["content"]
    except (KeyError, IndexError, TypeError) as error:
        raise MalformedAnswer("the judge's answer carries no log-probabilities") from error
    for position in positions or ():
        # Some servers list the chosen token among the top ones a second time.
        likely = {
            str(candidate.get("token", "")): float(candidate["logprob"])
            for candidate in [position, *(position.get("top_logprobs") or ())]
        }
        yes = no = 0.0
        for token, logprob in likely.items():
            word = token.strip().strip(".!,:").lower()
            if word == "yes":
                yes += math.exp(logprob)
            elif word == "no":
                no += math.exp(logprob)
        if yes + no > 0:
            return yes / (yes + no)
    return 0.5
