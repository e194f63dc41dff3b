"""The algorithms over whole answers: best-of-N and self-consistency.

Both take N samples of the whole answer in one `generate(n=N)`: one request where the
server supports `n`, N concurrent ones where it does not.
"""

from __future__ import annotations

import asyncio

from modelserve.common.answers import extract_answer, majority
from modelserve.common.modelserve import Algorithm
from modelserve.gateway.scaling.lm import Generation, LanguageModel, Prompt
from modelserve.gateway.scaling.results import (
    DEFAULT_OPTIONS,
    Candidate,
    Meter,
    Options,
    Result,
    best_index,
)
from modelserve.gateway.scaling.rewards import Attempt, Reward


async def best_of_n(
    lm: LanguageModel,
    reward: Reward,
    prompt: Prompt,
    *,
    budget: int,
    options: Options = DEFAULT_OPTIONS,
) -> Result:
    """N candidates, each scored by an outcome reward; the best-scoring one wins (the
    first of equal scores). Equal texts are scored once."""
    meter = Meter()
    samples = await _samples(meter, lm, prompt, budget, options, logprobs=reward.needs_logprobs)
    first_of: dict[str, int] = {}
    for index, sample in enumerate(samples):
        first_of.setdefault(sample.text, index)
    unique = list(first_of.values())
    attempts = [
        Attempt(samples[index].text, token_logprobs=samples[index].token_logprobs)
        for index in unique
    ]
    unique_scores = dict(zip(unique, await meter.score(reward, prompt, attempts), strict=True))
    scores = [unique_scores[first_of[sample.text]] for sample in samples]
    candidates = [
        Candidate(sample.text, score=score, finish_reason=sample.finish_reason)
        for sample, score in zip(samples, scores, strict=True)
    ]
    return meter.result(Algorithm.BEST_OF_N, candidates, best_index(scores))


async def self_consistency(
    lm: LanguageModel, prompt: Prompt, *, budget: int, options: Options = DEFAULT_OPTIONS
) -> Result:
    """N samples, their final answers extracted (`answers.extract_answer`) and voted on;
    the first sample with the winning answer is returned (`answers.majority`). A
    candidate's score is its answer's share of the votes (0 without an answer)."""
    meter = Meter()
    samples = await _samples(meter, lm, prompt, budget, options)
    # A pattern may take up to PATTERN_SECONDS a sample: off the event loop, which
    # every other request of the process shares.
    answers = await asyncio.to_thread(
        lambda: [extract_answer(sample.text, options.answer_pattern) for sample in samples]
    )
    vote = majority(answers)
    candidates = [
        Candidate(
            sample.text,
            score=0.0 if answer is None else vote.counts[answer] / budget,
            answer=answer,
            finish_reason=sample.finish_reason,
        )
        for sample, answer in zip(samples, answers, strict=True)
    ]
    return meter.result(Algorithm.SELF_CONSISTENCY, candidates, vote.selected)


async def _samples(
    meter: Meter,
    lm: LanguageModel,
    prompt: Prompt,
    budget: int,
    options: Options,
    *,
    logprobs: bool = False,
) -> tuple[Generation, ...]:
    """`budget` samples of the whole answer, in one `generate`."""
    if budget < 1:
        raise ValueError("the budget must be at least 1")
    (generated,) = await meter.generate(
        [
            lm.generate(
                prompt,
                n=budget,
                max_tokens=options.max_tokens,
                stop=options.stop,
                temperature=options.temperature,
                logprobs=logprobs,
            )
        ]
    )
    return generated.samples
