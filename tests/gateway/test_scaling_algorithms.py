"""The scaling algorithms as pure logic: a scripted language model and scripted rewards."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from modelserve.common.modelserve import Algorithm
from modelserve.gateway.scaling.algorithms import run
from modelserve.gateway.scaling.lm import Generation, Generations, Prompt, Usage
from modelserve.gateway.scaling.openai_lm import OpenAIChatLM
from modelserve.gateway.scaling.results import Meter, Options
from modelserve.gateway.scaling.rewards import Attempt, MeanLogprob, Scores
from modelserve.gateway.scaling.sampling import best_of_n, self_consistency
from modelserve.gateway.scaling.steps import Path, advance, extend
from modelserve.gateway.scaling.stepwise import (
    beam_search,
    beam_shape,
    particle_filtering,
    resampling_weights,
)

PROMPT = Prompt.of([{"role": "user", "content": "What is 2+3?"}])


@dataclasses.dataclass
class Call:
    prefix: str
    n: int
    max_tokens: int | None
    stop: tuple[str, ...]
    logprobs: bool


class ScriptedLM:
    """Each sample is `respond(prefix, k)`, k counting the samples asked for that prefix;
    every call costs 10 prompt tokens and 5 per sample."""

    def __init__(self, respond: Callable[[str, int], Generation]) -> None:
        self.respond = respond
        self.calls: list[Call] = []
        self._asked: dict[str, int] = {}

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
        self.calls.append(Call(prompt.prefix, n, max_tokens, tuple(stop), logprobs))
        first = self._asked.get(prompt.prefix, 0)
        self._asked[prompt.prefix] = first + n
        samples = tuple(self.respond(prompt.prefix, first + k) for k in range(n))
        return Generations(samples, Usage(1, 10, 5 * n))


def texts(*values: str) -> Callable[[str, int], Generation]:
    return lambda prefix, k: Generation(values[k % len(values)], "stop", eos=True)


class ScriptedReward:
    needs_logprobs = False

    def __init__(self, score: Callable[[Attempt], float]) -> None:
        self._score = score
        self.seen: list[list[Attempt]] = []

    async def score(self, prompt: Prompt, attempts: Sequence[Attempt]) -> Scores:
        self.seen.append(list(attempts))
        return Scores(tuple(self._score(attempt) for attempt in attempts), Usage(1, 7, 0))


def by_length(attempt: Attempt) -> float:
    return float(len(attempt.text))


# --- best-of-N ---------------------------------------------------------------------


def test_best_of_n_returns_the_best_scored_and_reports_every_score() -> None:
    lm = ScriptedLM(texts("a", "abc", "ab", "abc"))
    reward = ScriptedReward(by_length)
    result = asyncio.run(best_of_n(lm, reward, PROMPT, budget=4))
    assert [c.text for c in result.candidates] == ["a", "abc", "ab", "abc"]
    assert [c.score for c in result.candidates] == [1.0, 3.0, 2.0, 3.0]
    assert result.selected == 1  # the first of two equal best
    assert result.text == "abc"
    assert result.algorithm is Algorithm.BEST_OF_N
    # One generate for all N; equal texts scored once.
    assert [call.n for call in lm.calls] == [4]
    assert [a.text for a in reward.seen[0]] == ["a", "abc", "ab"]
    assert result.generation == Usage(1, 10, 20)
    assert result.reward == Usage(1, 7, 0)
    assert result.upstream_calls == 2
    assert result.generation_seconds >= 0 and result.reward_seconds >= 0


def test_best_of_n_asks_for_logprobs_when_the_reward_needs_them() -> None:
    def respond(prefix: str, k: int) -> Generation:
        logprobs = ((-1.0, -1.0), (-0.1, -0.3), (-2.0,))[k]
        return Generation(f"answer {k}", "stop", eos=True, token_logprobs=logprobs)

    lm = ScriptedLM(respond)
    result = asyncio.run(best_of_n(lm, MeanLogprob(), PROMPT, budget=3))
    assert lm.calls[0].logprobs
    assert result.selected == 1
    assert result.chosen.score == pytest.approx(-0.2)
    assert result.reward == Usage()  # no upstream call


def test_best_of_n_passes_the_options_on() -> None:
    lm = ScriptedLM(texts("x"))
    options = Options(max_tokens=12, stop=("END",))
    asyncio.run(best_of_n(lm, ScriptedReward(by_length), PROMPT, budget=2, options=options))
    assert lm.calls == [Call("", 2, 12, ("END",), False)]


# --- self-consistency ---------------------------------------------------------------


def test_self_consistency_returns_the_majority_answer() -> None:
    lm = ScriptedLM(texts("It is 4.", r"So \boxed{5}", "no idea", "5.0 surely", "4"))
    result = asyncio.run(self_consistency(lm, PROMPT, budget=5))
    assert [c.answer for c in result.candidates] == ["4", "5", None, "5", "4"]
    # 4 and 5 have two votes each: 4 appeared first.
    assert result.selected == 0
    assert [c.score for c in result.candidates] == [0.4, 0.4, 0.0, 0.4, 0.4]
    assert result.reward == Usage()
    assert lm.calls[0].n == 5


def test_self_consistency_majority_beats_order() -> None:
    lm = ScriptedLM(texts("4", "5", "5"))
    result = asyncio.run(self_consistency(lm, PROMPT, budget=3))
    assert result.selected == 1
    assert result.chosen.answer == "5"


def test_self_consistency_uses_the_answer_pattern() -> None:
    lm = ScriptedLM(texts("Final: B (not 3)", "Final: A", "Final: B"))
    options = Options(answer_pattern=r"Final: (\w)")
    result = asyncio.run(self_consistency(lm, PROMPT, budget=3, options=options))
    assert result.chosen.answer == "B"
    assert result.selected == 0


# --- steps --------------------------------------------------------------------------


def test_a_step_that_meets_the_delimiter_continues_with_it() -> None:
    options = Options()
    step = Generation("First, add.", "stop", eos=False, stop_sequence="\n\n", completion_tokens=3)
    path = advance(Path(), step, options)
    assert path.prefix == "First, add.\n\n"
    assert path.steps == ("First, add.",)
    assert not path.finished
    assert path.tokens == 3
    assert path.text("\n\n") == "First, add."


def test_a_step_cut_by_its_token_limit_continues_without_a_delimiter() -> None:
    path = advance(Path(), Generation("First, a", "length", eos=False), Options())
    assert path.prefix == "First, a"
    assert not path.finished
    assert path.tokens is None  # the server did not count this sample alone


@pytest.mark.parametrize(
    "sample",
    [
        Generation("So 5.", "stop", eos=True),
        Generation("So 5.", "stop", eos=False, stop_sequence="END"),  # the client's stop
        Generation("  ", "stop", eos=None),  # nothing left to say
    ],
)
def test_a_path_finishes_when_the_answer_ends(sample: Generation) -> None:
    path = advance(Path(prefix="2+3.\n\n", steps=("2+3.",)), sample, Options())
    assert path.finished
    assert path.finish_reason == "stop"


def test_a_path_finishes_at_max_steps_or_max_tokens() -> None:
    step = Generation("more", "stop", eos=None, completion_tokens=4)
    assert advance(Path(steps=("a",)), step, Options(max_steps=2)).finish_reason == "length"
    by_tokens = advance(Path(tokens=6), step, Options(max_tokens=10))
    assert by_tokens.finish_reason == "length"
    assert by_tokens.tokens == 10


# --- particle filtering -------------------------------------------------------------


def stepwise(steps_to_end: int, first_step: Callable[[int], str]) -> ScriptedLM:
    """Every answer has `steps_to_end` steps; the first step of sample k is
    first_step(k), later ones repeat the step count."""

    def respond(prefix: str, k: int) -> Generation:
        done = prefix.count("\n\n")
        text = first_step(k) if done == 0 else f"step {done + 1}"
        final = done + 1 == steps_to_end
        return Generation(text, "stop", eos=final, stop_sequence=None if final else "\n\n")

    return ScriptedLM(respond)


def good_or_bad(attempt: Attempt) -> float:
    return 0.99 if attempt.text.startswith("good") else 0.01


def test_particle_filtering_budget_is_the_number_of_particles() -> None:
    lm = stepwise(3, lambda k: f"start {k}")
    result = asyncio.run(
        particle_filtering(lm, ScriptedReward(good_or_bad), PROMPT, budget=5, rng=random.Random(0))
    )
    assert len(result.candidates) == 5
    # The first step of all particles: one generate with n=5 of the bare prompt.
    assert lm.calls[0] == Call("", 5, 256, ("\n\n",), False)
    assert result.rounds == 3
    assert all(c.steps == 3 and c.finish_reason == "stop" for c in result.candidates)


def test_particle_filtering_resampling_keeps_the_dominant_particle() -> None:
    lm = stepwise(3, lambda k: "good start" if k == 2 else "bad start")
    reward = ScriptedReward(good_or_bad)
    result = asyncio.run(particle_filtering(lm, reward, PROMPT, budget=4, rng=random.Random(1234)))
    assert all(c.text.startswith("good start") for c in result.candidates)
    assert result.text == "good start\n\nstep 2\n\nstep 3"
    # After resampling every particle shares the good prefix: one call with n=4.
    assert [(call.prefix, call.n) for call in lm.calls[1:]] == [
        ("good start\n\n", 4),
        ("good start\n\nstep 2\n\n", 4),
    ]
    # Partial answers are scored as such, finished ones not.
    assert all(attempt.partial for attempt in reward.seen[0])
    assert not any(attempt.partial for attempt in reward.seen[-1])


def test_particle_filtering_is_repeatable_with_a_seed() -> None:
    def once(seed: int) -> list[str]:
        lm = stepwise(3, lambda k: f"start {k % 3}")
        reward = ScriptedReward(lambda a: 0.2 + 0.2 * int(a.text[6]))
        result = asyncio.run(
            particle_filtering(lm, reward, PROMPT, budget=6, rng=random.Random(seed))
        )
        return [c.text for c in result.candidates]

    assert once(7) == once(7)


def test_particle_filtering_stops_at_max_steps() -> None:
    lm = stepwise(100, lambda k: "on")
    options = Options(max_steps=4)
    result = asyncio.run(
        particle_filtering(
            lm, ScriptedReward(by_length), PROMPT, budget=2, options=options, rng=random.Random(0)
        )
    )
    assert result.rounds == 4
    assert {c.finish_reason for c in result.candidates} == {"length"}
    assert {c.steps for c in result.candidates} == {4}


def test_particle_filtering_finished_particles_are_not_extended() -> None:
    # Sample 0 ends after its first step; the others take three.
    def respond(prefix: str, k: int) -> Generation:
        if not prefix:
            return Generation(f"first {k}", "stop", eos=k == 0, stop_sequence="\n\n")
        done = prefix.count("\n\n")
        return Generation(f"more {done}", "stop", eos=done == 2, stop_sequence="\n\n")

    lm = ScriptedLM(respond)
    # The finished particle scores so much lower that resampling drops it.
    reward = ScriptedReward(lambda a: 0.001 if a.text == "first 0" else 0.9)
    result = asyncio.run(particle_filtering(lm, reward, PROMPT, budget=3, rng=random.Random(5)))
    assert sum(call.n for call in lm.calls) == 3 + 3 + 3
    assert result.chosen.steps == 3


def test_step_wise_answers_keep_to_max_tokens() -> None:
    # Every step is four tokens and no answer ends by itself.
    lm = ScriptedLM(
        lambda prefix, k: Generation(
            "a step", "stop", eos=False, stop_sequence="\n\n", token_logprobs=(-0.5,) * 4
        )
    )
    options = Options(max_tokens=10)
    result = asyncio.run(
        particle_filtering(
            lm, ScriptedReward(by_length), PROMPT, budget=2, options=options, rng=random.Random(0)
        )
    )
    # Two samples share each request: log-probabilities are asked for, to count tokens.
    assert all(call.logprobs for call in lm.calls)
    assert [call.max_tokens for call in lm.calls] == [10, 6, 2]
    assert result.rounds == 3
    assert {c.finish_reason for c in result.candidates} == {"length"}


def test_resampling_weights() -> None:
    auto = resampling_weights([0.5, 0.9], Options())
    assert auto[1] / auto[0] == pytest.approx(9.0)  # odds: logit weights
    raw = resampling_weights([-1.0, -2.0], Options())  # not probabilities: the scores
    assert raw[0] / raw[1] == pytest.approx(2.718281828)
    hot = resampling_weights([0.5, 0.9], Options(resample_temperature=2.0))
    assert hot[1] / hot[0] == pytest.approx(3.0)
    assert resampling_weights([float("-inf")] * 2, Options()) == [1.0, 1.0]


# --- beam search --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "width", "shape"),
    [(16, None, (4, 4)), (10, None, (3, 3)), (1, None, (1, 1)), (8, 2, (2, 4)), (3, 5, (3, 1))],
)
def test_beam_shape_comes_from_the_budget(
    budget: int, width: int | None, shape: tuple[int, int]
) -> None:
    assert beam_shape(budget, width) == shape


def test_beam_search_keeps_the_best_beams_and_returns_the_best_finished() -> None:
    # The score of a partial answer is the sum of the digits it contains.
    def respond(prefix: str, k: int) -> Generation:
        done = prefix.count("\n\n")
        final = done == 2
        return Generation(str(k % 4), "stop", eos=final, stop_sequence=None if final else "\n\n")

    lm = ScriptedLM(respond)
    reward = ScriptedReward(lambda a: float(sum(int(ch) for ch in a.text if ch.isdigit())))
    result = asyncio.run(beam_search(lm, reward, PROMPT, budget=4))
    # width 2, 2 ways each: the first step takes 4 samples of the prompt ...
    assert (lm.calls[0].prefix, lm.calls[0].n) == ("", 4)
    # ... then the two best beams ("3", "2") are extended twice each, one call per beam.
    assert sorted((call.prefix, call.n) for call in lm.calls[1:3]) == [
        ("2\n\n", 2),
        ("3\n\n", 2),
    ]
    assert result.rounds == 3
    assert result.text == "3\n\n1\n\n1"
    assert result.chosen.score == 5.0
    # The last step finished all four children of the two beams.
    assert len(result.candidates) == 4
    assert result.generation.calls == 5


def test_beam_search_narrows_when_beams_finish() -> None:
    def respond(prefix: str, k: int) -> Generation:
        final = (not prefix and k == 0) or prefix.count("\n\n") == 1
        return Generation(f"s{k}", "stop", eos=final, stop_sequence=None if final else "\n\n")

    lm = ScriptedLM(respond)
    result = asyncio.run(beam_search(lm, ScriptedReward(by_length), PROMPT, budget=4))
    # One of the first four finished: only one beam (width 2 - 1) goes on, two ways.
    assert [call.n for call in lm.calls] == [4, 2]
    assert len(result.candidates) == 3


# --- run, cancellation --------------------------------------------------------------


def test_run_dispatches_and_checks_for_a_reward() -> None:
    lm = ScriptedLM(texts("5", "5", "4"))
    result = asyncio.run(run(Algorithm.SELF_CONSISTENCY, lm, PROMPT, budget=3, reward=None))
    assert result.chosen.answer == "5"
    with pytest.raises(ValueError, match="needs a reward"):
        asyncio.run(run(Algorithm.BEST_OF_N, lm, PROMPT, budget=3, reward=None))
    with pytest.raises(ValueError, match="no algorithm"):
        asyncio.run(run(Algorithm.NONE, lm, PROMPT, budget=3, reward=None))
    with pytest.raises(ValueError, match="budget"):
        asyncio.run(run(Algorithm.SELF_CONSISTENCY, lm, PROMPT, budget=0, reward=None))


class HangingPost:
    """An upstream whose every call waits forever, noting whether it was cancelled."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.started = 0
        self.cancelled = 0
        self.all_started = asyncio.Event()

    async def __call__(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.started += 1
        if self.started >= self.expected:
            self.all_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")


async def cancel_when_started(task: asyncio.Task[Any], post: HangingPost) -> None:
    await post.all_started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_cancelling_best_of_n_cancels_every_upstream_call() -> None:
    async def scenario() -> HangingPost:
        post = HangingPost(5)
        lm = OpenAIChatLM(post, model="m", supports_n=False, max_concurrency=8)
        task = asyncio.create_task(best_of_n(lm, ScriptedReward(by_length), PROMPT, budget=5))
        await cancel_when_started(task, post)
        return post

    post = asyncio.run(scenario())
    assert (post.started, post.cancelled) == (5, 5)


def test_cancelling_a_step_cancels_every_particle_in_flight() -> None:
    async def scenario() -> HangingPost:
        post = HangingPost(3)
        lm = OpenAIChatLM(post, model="m", supports_n=True)
        # Three different partial answers: three requests at once.
        paths = [Path(prefix=f"p{k}\n\n", steps=(f"p{k}",)) for k in range(3)]
        task = asyncio.create_task(
            extend(Meter(), lm, PROMPT, paths, [2, 2, 2], Options(), logprobs=False)
        )
        await cancel_when_started(task, post)
        return post

    post = asyncio.run(scenario())
    assert (post.started, post.cancelled) == (3, 3)


class Unreachable(Exception):
    pass


def test_a_failing_call_cancels_the_others_and_is_raised_as_itself() -> None:
    hanging = HangingPost(3)

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if body["seed"] == 2:
            await asyncio.sleep(0)
            raise Unreachable("the model server is unreachable")
        return await hanging(path, body)

    lm = OpenAIChatLM(post, model="m", supports_n=False, sampling={"seed": 0})
    with pytest.raises(Unreachable):
        asyncio.run(self_consistency(lm, PROMPT, budget=4))
    assert (hanging.started, hanging.cancelled) == (3, 3)
