"""Rewards: over fake upstream answers, and once against the real SmolLM2 server."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx
import pytest

from modelserve.common.modelserve import Aggregation
from modelserve.gateway.scaling.lm import Prompt, Usage
from modelserve.gateway.scaling.openai_lm import MalformedAnswer, OpenAIChatLM
from modelserve.gateway.scaling.reward_model import QWEN_PRM_SYSTEM, ProcessRewardModel
from modelserve.gateway.scaling.rewards import (
    Attempt,
    LlmJudge,
    MeanLogprob,
    RewardError,
    aggregate,
    p_yes,
    question_text,
)
from modelserve.testbed.llm import LlmServer

PROMPT = Prompt.of(
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]
)


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        (Aggregation.MIN, 0.2),
        (Aggregation.LAST, 0.5),
        (Aggregation.PRODUCT, 0.08),
        (Aggregation.MEAN, 2.5 / 4),
    ],
)
def test_aggregate(how: Aggregation, expected: float) -> None:
    assert aggregate([0.8, 0.2, 1.0, 0.5], how) == pytest.approx(expected)


def test_aggregate_needs_scores() -> None:
    with pytest.raises(ValueError, match="no step scores"):
        aggregate([], Aggregation.MIN)


def test_mean_logprob() -> None:
    attempts = [
        Attempt("ab", token_logprobs=(-1.0, -3.0)),
        Attempt("", token_logprobs=()),
    ]
    scores = asyncio.run(MeanLogprob().score(PROMPT, attempts))
    assert scores.values == (-2.0, -math.inf)
    assert scores.usage == Usage()
    with pytest.raises(RewardError, match="log-probabilities"):
        asyncio.run(MeanLogprob().score(PROMPT, [Attempt("no logprobs")]))


def test_question_text() -> None:
    assert question_text(PROMPT) == "What is 2+3?"
    turns = Prompt.of(
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "2+3?"},
        ]
    )
    assert question_text(turns) == "user: Hi\n\nassistant: Hello\n\nuser: 2+3?"


def judge_answer(*positions: list[tuple[str, float]]) -> dict[str, Any]:
    content = [
        {
            "token": top[0][0],
            "logprob": top[0][1],
            "top_logprobs": [{"token": token, "logprob": logprob} for token, logprob in top],
        }
        for top in positions
    ]
    return {
        "choices": [{"index": 0, "message": {"content": "x"}, "logprobs": {"content": content}}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 1},
    }


def test_p_yes_is_normalized_over_yes_and_no() -> None:
    answer = judge_answer([("Yes", math.log(0.6)), (" yes", math.log(0.1)), ("No", math.log(0.1))])
    assert p_yes(answer) == pytest.approx(0.7 / 0.8)


def test_p_yes_reads_the_first_position_with_a_verdict() -> None:
    answer = judge_answer(
        [("\n", math.log(0.9)), ("The", math.log(0.1))],
        [("no", math.log(0.5)), ("yes", math.log(0.5 / 4))],
    )
    assert p_yes(answer) == pytest.approx(0.2)
    assert p_yes(judge_answer([("Maybe", -0.1)])) == 0.5
    with pytest.raises(MalformedAnswer):
        p_yes({"choices": [{"message": {"content": "yes"}}]})


def test_the_judge_asks_per_candidate_and_sums_its_usage() -> None:
    requests: list[dict[str, Any]] = []

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        requests.append(body)
        right = "It is 5." in body["messages"][0]["content"]
        verdict = math.log(0.9) if right else math.log(0.2)
        return judge_answer([("Yes", verdict), ("No", math.log(1 - math.exp(verdict)))])

    judge = LlmJudge(post, model="judge")
    attempts = [Attempt("It is 5."), Attempt("It is 6."), Attempt("First, 2+3", partial=True)]
    scores = asyncio.run(judge.score(PROMPT, attempts))
    assert scores.values == pytest.approx((0.9, 0.2, 0.2))
    assert scores.usage == Usage(3, 90, 3)
    assert {body["model"] for body in requests} == {"judge"}
    assert all(body["logprobs"] and body["top_logprobs"] == 20 for body in requests)
    assert "What is 2+3?" in requests[0]["messages"][0]["content"]
    assert "first steps" in requests[2]["messages"][0]["content"]


def pooling_answer(rows: list[list[float]]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"index": 0, "object": "pooling", "data": rows}],
        "usage": {"prompt_tokens": 40, "total_tokens": 40},
    }


def test_the_process_reward_model_scores_each_step() -> None:
    requests: list[tuple[str, dict[str, Any]]] = []

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        requests.append((path, body))
        steps = body["messages"][-1]["content"].count("<extra_0>")
        return pooling_answer([[0.1 * k, 1 - 0.1 * k] for k in range(1, steps + 1)])

    prm = ProcessRewardModel(post, model="prm", aggregation=Aggregation.LAST)
    attempts = [Attempt("2+3\n\nis 5\n\n"), Attempt("partial", steps=("a", "b", "c"), partial=True)]
    step_scores = asyncio.run(prm.score_steps(PROMPT, attempts))
    assert [list(values) for values in step_scores.values] == [
        pytest.approx([0.9, 0.8]),
        pytest.approx([0.9, 0.8, 0.7]),
    ]
    assert step_scores.usage == Usage(2, 80, 0)
    scores = asyncio.run(prm.score(PROMPT, attempts))
    assert scores.values == pytest.approx((0.8, 0.7))

    path, body = requests[0]
    assert path == "/pooling"
    assert body["model"] == "prm"
    assert body["messages"] == [
        {"role": "system", "content": QWEN_PRM_SYSTEM},
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "2+3<extra_0>is 5<extra_0>"},
    ]
    assert "task" not in body


def test_the_process_reward_model_asks_for_a_task_when_told() -> None:
    bodies: list[dict[str, Any]] = []

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        bodies.append(body)
        return pooling_answer([[0.3, 0.7]])

    prm = ProcessRewardModel(post, model="prm", task="token_classify", system_prompt=None)
    assert asyncio.run(prm.score(PROMPT, [Attempt("one step")])).values == (0.7,)
    assert bodies[0]["task"] == "token_classify"
    assert bodies[0]["messages"][0]["role"] == "user"


def test_the_process_reward_model_rejects_answers_without_steps() -> None:
    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return pooling_answer([])

    prm = ProcessRewardModel(post, model="prm")
    with pytest.raises(MalformedAnswer, match="no step"):
        asyncio.run(prm.score(PROMPT, [Attempt("x")]))


# --- against the real SmolLM2 server ------------------------------------------------


@pytest.mark.llm
def test_candidates_and_rewards_from_the_real_server(llm: LlmServer) -> None:
    base = llm.url.removesuffix("/v1")

    async def scenario() -> tuple[list[float], list[float], Usage]:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:

            async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                response = await client.post(path, json=body)
                response.raise_for_status()
                answer: dict[str, Any] = response.json()
                return answer

            lm = OpenAIChatLM(post, model=llm.alias, supports_n=False, max_concurrency=2)
            prompt = Prompt.of([{"role": "user", "content": "What is 2+3? Answer with a number."}])
            generated = await lm.generate(
                prompt, n=3, max_tokens=16, temperature=0.8, logprobs=True
            )
            attempts = [
                Attempt(sample.text, token_logprobs=sample.token_logprobs)
                for sample in generated.samples
            ]
            logprob_scores = await MeanLogprob().score(prompt, attempts)
            judged = await LlmJudge(post, model=llm.alias, max_concurrency=2).score(
                prompt, attempts
            )
            return list(logprob_scores.values), list(judged.values), generated.usage

    logprob_scores, judged, usage = asyncio.run(scenario())
    assert len(logprob_scores) == len(judged) == 3
    assert all(math.isfinite(score) and score <= 0 for score in logprob_scores)
    assert all(0.0 <= score <= 1.0 for score in judged)
    assert usage.calls == 3
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
