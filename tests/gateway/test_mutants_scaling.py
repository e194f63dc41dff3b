"""Guarantees of the scaling rewards that mutants of rewards.py broke unnoticed
(bench/mutation.py): what the LLM judge asks its model, exactly."""

from __future__ import annotations

import asyncio
from typing import Any

from modelserve.gateway.scaling.lm import Prompt
from modelserve.gateway.scaling.openai_lm import CHAT_PATH
from modelserve.gateway.scaling.rewards import (
    JUDGE_PARTIAL_PROMPT,
    JUDGE_PROMPT,
    Attempt,
    LlmJudge,
)

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
