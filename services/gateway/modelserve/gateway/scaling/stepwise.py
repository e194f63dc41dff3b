"""The step-wise algorithms: particle filtering and beam search.

Both grow partial answers one step at a time (`steps`) and score every partial answer
with the reward after each step: a process reward model's aggregated step scores, a
judge's P(yes) for the steps so far, or their mean log-probability.

Particle filtering (Puri et al., 2025, as in its_hub): the budget is the number of
particles. Each round extends every unfinished particle by one step, scores it, and
resamples all N particles, with replacement, by the softmax of their log-weights over
`resample_temperature`; a log-weight is logit(score) for scores that are probabilities,
the score itself otherwise. Finished particles keep their last score and may be drawn
again. When every particle is finished, the best-scoring one wins.

Beam search: of the budget N, `beam_width` W beams (default floor(sqrt(N))) are kept
after each step and each is extended E = N // W ways, so a step costs at most W * E <= N
samples (its_hub's budget = beam_width * expansions). The first step takes W * E
samples of the prompt. A beam that finishes leaves the search and narrows it, as in
classic beam search; the best-scoring finished beam wins.

Ties go to the earliest candidate. Randomness comes only from the `rng` given (seed it
for repeatable runs).
"""

from __future__ import annotations

import dataclasses
import math
import random

from modelserve.common.modelserve import Algorithm
from modelserve.gateway.scaling.lm import LanguageModel, Prompt
from modelserve.gateway.scaling.results import DEFAULT_OPTIONS, Meter, Options, Result, best_index
from modelserve.gateway.scaling.rewards import Reward
from modelserve.gateway.scaling.steps import Path, extend


async def particle_filtering(
    lm: LanguageModel,
    reward: Reward,
    prompt: Prompt,
    *,
    budget: int,
    options: Options = DEFAULT_OPTIONS,
    rng: random.Random | None = None,
) -> Result:
    _check(budget, options)
    rng = rng or random.Random()
    meter = Meter()
    delimiter = options.step_delimiter
    particles = [Path()] * budget
    rounds = 0
    while True:
        live = [index for index, particle in enumerate(particles) if not particle.finished]
        grown = await extend(
            meter,
            lm,
            prompt,
            [particles[index] for index in live],
            [1] * len(live),
            options,
            logprobs=reward.needs_logprobs,
        )
        extended = [paths[0] for paths in grown]
        scores = await meter.score(reward, prompt, [path.attempt(delimiter) for path in extended])
        for index, path, score in zip(live, extended, scores, strict=True):
            particles[index] = dataclasses.replace(path, score=score)
        rounds += 1
        if all(particle.finished for particle in particles):
            break
        weights = resampling_weights([particle.score for particle in particles], options)
        particles = rng.choices(particles, weights=weights, k=budget)
    selected = best_index([particle.score for particle in particles])
    candidates = [particle.candidate(delimiter) for particle in particles]
    return meter.result(Algorithm.PARTICLE_FILTERING, candidates, selected, rounds)


def resampling_weights(scores: list[float], options: Options) -> list[float]:
    """softmax(log-weight / temperature) over the particles' scores, unnormalized."""
    temperature = options.resample_temperature
    use_logit = options.logit_weights
    if use_logit is None:
        use_logit = all(0.0 <= score <= 1.0 for score in scores)
    logits = [_logit(score) if use_logit else score for score in scores]
    top = max(logits)
    if top == -math.inf:
        return [1.0] * len(scores)
    return [math.exp((value - top) / temperature) for value in logits]


def _logit(probability: float) -> float:
    clipped = min(max(probability, 1e-7), 1 - 1e-7)
    return math.log(clipped / (1 - clipped))


def beam_shape(budget: int, beam_width: int | None) -> tuple[int, int]:
    """(beams kept per step, ways each is extended) for a budget."""
    width = min(budget, beam_width or max(1, math.isqrt(budget)))
    return width, max(1, budget // width)


async def beam_search(
    lm: LanguageModel,
    reward: Reward,
    prompt: Prompt,
    *,
    budget: int,
    options: Options = DEFAULT_OPTIONS,
) -> Result:
    _check(budget, options)
    width, expansions = beam_shape(budget, options.beam_width)
    meter = Meter()
    delimiter = options.step_delimiter
    beams, counts = [Path()], [width * expansions]
    finished: list[Path] = []
    rounds = 0
    while beams:
        grown = await extend(
            meter, lm, prompt, beams, counts, options, logprobs=reward.needs_logprobs
        )
        children = [path for paths in grown for path in paths]
        scores = await meter.score(reward, prompt, [path.attempt(delimiter) for path in children])
        children = [
            dataclasses.replace(path, score=score)
            for path, score in zip(children, scores, strict=True)
        ]
        rounds += 1
        finished.extend(path for path in children if path.finished)
        # sorted() is stable: of equal scores, the earlier beam stays.
        live = sorted(
            (path for path in children if not path.finished),
            key=lambda path: path.score,
            reverse=True,
        )
        beams = live[: max(0, width - len(finished))]
        counts = [expansions] * len(beams)
    selected = best_index([path.score for path in finished])
    candidates = [path.candidate(delimiter) for path in finished]
    return meter.result(Algorithm.BEAM_SEARCH, candidates, selected, rounds)


def _check(budget: int, options: Options) -> None:
    if budget < 1:
        raise ValueError("the budget must be at least 1")
    if options.max_steps < 1 or options.step_max_tokens < 1:
        raise ValueError("max_steps and step_max_tokens must be at least 1")
    if options.resample_temperature <= 0:
        raise ValueError("the resampling temperature must be positive")
    if not options.step_delimiter:
        raise ValueError("the step delimiter must not be empty")
