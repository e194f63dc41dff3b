"""A process reward model (Qwen2.5-Math-PRM-7B and its kind) served by vLLM.

vLLM serves such a model with a STEP pooler: `POST /pooling` with a chat (`messages`)
returns, for every step tag in the input, the classifier's probabilities
(`data[0].data == [[p_bad, p_good], ...]`). As the model card asks, the answer's steps
are joined and ended by the tag `<extra_0>`, after the system prompt the model was
trained with; the question is the client's conversation without its system message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from modelserve.common.modelserve import Aggregation
from modelserve.gateway.scaling.concurrency import gather_all
from modelserve.gateway.scaling.lm import Message, Prompt, Usage, total
from modelserve.gateway.scaling.openai_lm import MalformedAnswer, Post, message_text
from modelserve.gateway.scaling.rewards import Attempt, Scores, StepScores, aggregate

POOLING_PATH = "/pooling"
QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


class ProcessRewardModel:
    """Step scores from a PRM; as a `Reward`, their `aggregation` (min, last, product,
    mean). A whole answer's steps are its text split at `step_delimiter`."""

    needs_logprobs = False

    def __init__(
        self,
        post: Post,
        *,
        model: str,
        aggregation: Aggregation = Aggregation.MIN,
        step_delimiter: str = "\n\n",
        step_tag: str = "<extra_0>",
        system_prompt: str | None = QWEN_PRM_SYSTEM,
        positive_label: int = 1,
        task: str | None = None,
        max_concurrency: int = 8,
    ) -> None:
        """`task`: the pooling task to ask for ("token_classify" in recent vLLM, "encode"
        in older ones); None leaves it to the server, which knows its model's one."""
        self.model = model
        self.aggregation = aggregation
        self.step_delimiter = step_delimiter
        self._post = post
        self._step_tag = step_tag
        self._system_prompt = system_prompt
        self._positive_label = positive_label
        self._task = task
        self._slots = asyncio.Semaphore(max_concurrency)

    async def score(self, prompt: Prompt, attempts: Sequence[Attempt]) -> Scores:
        per_step = await self.score_steps(prompt, attempts)
        values = tuple(aggregate(scores, self.aggregation) for scores in per_step.values)
        return Scores(values, per_step.usage)

    async def score_steps(self, prompt: Prompt, attempts: Sequence[Attempt]) -> StepScores:
        conversation = self._conversation(prompt)
        scored = await gather_all(self._score_one(conversation, attempt) for attempt in attempts)
        return StepScores(
            tuple(values for values, _ in scored), total(usage for _, usage in scored)
        )

    def steps(self, attempt: Attempt) -> tuple[str, ...]:
        if attempt.steps:
            pieces: Sequence[str] = attempt.steps
        else:
            pieces = attempt.text.split(self.step_delimiter)
        steps = tuple(step.strip() for step in pieces if step.strip())
        return steps or ("",)

    def _conversation(self, prompt: Prompt) -> list[dict[str, Any]]:
        turns: list[dict[str, Any]] = []
        if self._system_prompt is not None:
            turns.append({"role": "system", "content": self._system_prompt})
        turns.extend(
            _plain(message) for message in prompt.messages if message.get("role") != "system"
        )
        return turns

    async def _score_one(
        self, conversation: list[dict[str, Any]], attempt: Attempt
    ) -> tuple[tuple[float, ...], Usage]:
        tag = self._step_tag
        answer = tag.join(self.steps(attempt)) + tag
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [*conversation, {"role": "assistant", "content": answer}],
            "add_generation_prompt": False,
        }
        if self._task is not None:
            body["task"] = self._task
        async with self._slots:
            pooled = await self._post(POOLING_PATH, body)
        usage = pooled.get("usage") or {}
        return self._step_scores(pooled), Usage(1, int(usage.get("prompt_tokens") or 0), 0)

    def _step_scores(self, pooled: Mapping[str, Any]) -> tuple[float, ...]:
        try:
            rows = pooled["data"][0]["data"]
            scores = tuple(
                float(row[self._positive_label]) if isinstance(row, list) else float(row)
                for row in rows
            )
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise MalformedAnswer(f"the reward model's answer is malformed: {error}") from error
        if not scores:
            raise MalformedAnswer("the reward model scored no step (is it a process reward model?)")
        return scores


def _plain(message: Message) -> dict[str, Any]:
    return {"role": message.get("role", "user"), "content": message_text(message)}
