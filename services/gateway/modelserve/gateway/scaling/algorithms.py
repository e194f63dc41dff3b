"""One entry point for the four algorithms, by the name a ModelServe or request gives.

Written natively rather than on its_hub (1.2.0, read for its definitions), because its
interfaces would cost the gateway what it needs:

- Its language model returns one message dict per call (`agenerate_single`); its
  orchestrator makes N calls for N samples, so vLLM's one request with `n` is lost,
  and so are the samples' finish reasons and log-probabilities (mean-log-probability
  rewards, telling an answer's end from a step's).
- Its default orchestrator bounds concurrency with a threading.Semaphore acquired in an
  executor thread: a cancelled waiter still takes a slot later and never gives it back,
  so a client going away leaks capacity instead of cancelling cleanly.
- Its randomness is the global `random` and `numpy.random` (resampling, ties in
  self-consistency): no per-request seed; self-consistency breaks ties at random.
- Its concrete client makes its own aiohttp sessions, and its process reward model
  loads the model in-process through reward-hub (vLLM, torch): the gateway's PRM is
  another ModelServe reached over HTTP.
- Its step-wise algorithms use the deprecated batch `agenerate`, and flatten the chat
  into one user message ("system: ...\nuser: ..."), so the model's chat template never
  sees the system prompt or earlier turns as such.

The definitions follow its_hub's: best-of-N by an outcome reward, self-consistency by
majority of extracted answers, particle filtering with softmax resampling of logit
weights and N particles, beam search with budget = beam width x expansions.
"""

from __future__ import annotations

import random

from modelserve.common.modelserve import Algorithm
from modelserve.gateway.scaling.lm import LanguageModel, Prompt
from modelserve.gateway.scaling.results import DEFAULT_OPTIONS, Options, Result
from modelserve.gateway.scaling.rewards import Reward
from modelserve.gateway.scaling.sampling import best_of_n, self_consistency
from modelserve.gateway.scaling.stepwise import beam_search, particle_filtering


async def run(
    algorithm: Algorithm,
    lm: LanguageModel,
    prompt: Prompt,
    *,
    budget: int,
    reward: Reward | None,
    options: Options = DEFAULT_OPTIONS,
    rng: random.Random | None = None,
) -> Result:
    """`algorithm` with `budget` samples (particles, beams x expansions). Every algorithm
    but self-consistency needs a reward. Cancelling the caller cancels every upstream
    call in flight; an upstream failure cancels the others and is raised as it is."""
    if algorithm is Algorithm.SELF_CONSISTENCY:
        return await self_consistency(lm, prompt, budget=budget, options=options)
    if algorithm is Algorithm.NONE:
        raise ValueError("no algorithm to run")
    if reward is None:
        raise ValueError(f"{algorithm.value} needs a reward")
    match algorithm:
        case Algorithm.BEST_OF_N:
            return await best_of_n(lm, reward, prompt, budget=budget, options=options)
        case Algorithm.PARTICLE_FILTERING:
            return await particle_filtering(
                lm, reward, prompt, budget=budget, options=options, rng=rng
            )
        case Algorithm.BEAM_SEARCH:
            return await beam_search(lm, reward, prompt, budget=budget, options=options)
    raise ValueError(f"unknown algorithm {algorithm!r}")
