"""Guarantees of the scaling rewards that mutants of rewards.py broke unnoticed
(bench/mutation.py): what the LLM judge asks its model, exactly; that `run` hands each
algorithm its inputs (the end-to-end tests cover it, but through a gateway process that
mutmut cannot see into); that candidates keep their samples' text and finish reason."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import pytest

from modelserve.common.modelserve import Algorithm
from modelserve.gateway.scaling.algorithms import run
from modelserve.gateway.scaling.lm import Generation, Generations, Prompt, Usage
from modelserve.gateway.scaling.openai_lm import CHAT_PATH
from modelserve.gateway.scaling.results import Options
from modelserve.gateway.scaling.rewards import (
    JUDGE_PARTIAL_PROMPT,
    JUDGE_PROMPT,
    Attempt,
    LlmJudge,
    Scores,
)
from modelserve.gateway.scaling.sampling import best_of_n, self_consistency
from modelserve.gateway.scaling.stepwise import beam_search, particle_filtering

PROMPT = Prompt.of([{"role": "user", "content": "What is 2+3?"}])


def test_the_judge_asks_for_a_short_deterministic_whole_answer_with_logprobs() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        sent.append((path, body))
        yes = {"token": "Yes", "logprob": -0.1, "top_logprobs": []}
        return {"choices": [{"logprobs": {"content": [yes]}}], "usage": {}}

    judge = LlmJudge(post, model="judge", top_logprobs=5)
    attempts = [Attempt("It is 5."), Attempt("First, 2", partial=True)]
    asyncio.run(judge.score(PROMPT, attempts))
    whole = JUDGE_PROMPT.format(question="What is 2+3?", answer="It is 5.")
    partial = JUDGE_PARTIAL_PROMPT.format(question="What is 2+3?", answer="First, 2")
    expected = {
        "model": "judge",
        "max_tokens": 4,  # a yes or a no, not an essay
        "temperature": 0,  # the same verdict every time
        "logprobs": True,
        "top_logprobs": 5,
        "stream": False,
    }
    assert sent == [
        (CHAT_PATH, {**expected, "messages": [{"role": "user", "content": whole}]}),
        (CHAT_PATH, {**expected, "messages": [{"role": "user", "content": partial}]}),
    ]


class RecordingLM:
    """Sample k of a prefix is `answer k`, ending the answer; records what each call asked."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self._count = 0

    async def generate(
        self,
        prompt: Prompt,
        *,
        n: int,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        temperature: float | None = None,
        logprobs: bool = False,
    ) -> Generations:
        self.asked.append({"n": n, "max_tokens": max_tokens, "temperature": temperature})
        first, self._count = self._count, self._count + n
        samples = tuple(
            Generation(f"answer {first + k} is {first + k}", "length", eos=True) for k in range(n)
        )
        return Generations(samples, Usage(1, 10, 5 * n))


class Longest:
    needs_logprobs = False

    async def score(self, prompt: Prompt, attempts: Sequence[Attempt]) -> Scores:
        return Scores(tuple(float(len(a.text)) for a in attempts), Usage(1, 7, 0))


@pytest.mark.parametrize(
    ("algorithm", "direct"),
    [
        (Algorithm.BEST_OF_N, best_of_n),
        (Algorithm.PARTICLE_FILTERING, particle_filtering),
        (Algorithm.BEAM_SEARCH, beam_search),
    ],
)
def test_run_hands_each_algorithm_its_inputs(algorithm: Algorithm, direct: Any) -> None:
    options = Options(max_tokens=7, temperature=0.3, step_max_tokens=9)
    extra = {"rng": random.Random(5)} if algorithm is Algorithm.PARTICLE_FILTERING else {}
    expected_lm = RecordingLM()
    expected = asyncio.run(
        direct(expected_lm, Longest(), PROMPT, budget=4, options=options, **extra)
    )
    lm = RecordingLM()
    rng = random.Random(5)
    got = asyncio.run(
        run(algorithm, lm, PROMPT, budget=4, reward=Longest(), options=options, rng=rng)
    )
    assert got.algorithm is algorithm
    assert (got.candidates, got.selected, got.rounds) == (
        expected.candidates,
        expected.selected,
        expected.rounds,
    )
    assert lm.asked == expected_lm.asked
    assert all(call["temperature"] == 0.3 for call in lm.asked)


def test_run_answers_self_consistency_without_a_reward_and_refuses_none() -> None:
    options = Options(max_tokens=7, temperature=0.3)
    lm = RecordingLM()
    result = asyncio.run(
        run(Algorithm.SELF_CONSISTENCY, lm, PROMPT, budget=3, reward=None, options=options)
    )
    assert result.algorithm is Algorithm.SELF_CONSISTENCY
    assert lm.asked == [{"n": 3, "max_tokens": 7, "temperature": 0.3}]
    with pytest.raises(ValueError, match="no algorithm to run"):
        asyncio.run(run(Algorithm.NONE, lm, PROMPT, budget=3, reward=None))
    with pytest.raises(ValueError, match="best-of-n needs a reward"):
        asyncio.run(run(Algorithm.BEST_OF_N, lm, PROMPT, budget=3, reward=None))


def test_candidates_keep_their_samples_text_and_finish_reason() -> None:
    voted = asyncio.run(self_consistency(RecordingLM(), PROMPT, budget=3))
    assert [c.text for c in voted.candidates] == [
        "answer 0 is 0",
        "answer 1 is 1",
        "answer 2 is 2",
    ]
    assert {c.finish_reason for c in voted.candidates} == {"length"}
    best = asyncio.run(best_of_n(RecordingLM(), Longest(), PROMPT, budget=2))
    assert {c.finish_reason for c in best.candidates} == {"length"}


def test_a_budget_of_one_is_one_sample_and_below_is_refused() -> None:
    one = asyncio.run(self_consistency(RecordingLM(), PROMPT, budget=1))
    assert len(one.candidates) == 1
    with pytest.raises(ValueError, match="the budget must be at least 1"):
        asyncio.run(self_consistency(RecordingLM(), PROMPT, budget=0))
