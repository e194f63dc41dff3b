"""One example of an evaluation dataset: read from its JSONL line, asked, judged. Pure.

A line is a JSON object with the expected `answer` (a string or a number) and either a
`prompt` (or `question`), sent as the user's message, or chat `messages`, sent as they
are; an `id` is carried to the per-example log. The model's answer is the text's final
answer as self-consistency extracts it (`modelserve.common.answers`: the spec's
`answer_pattern`, else the last `\\boxed{}`, else the last number), normalized; it is
right when it equals the normalized expected answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from modelserve.common.answers import extract_answer, normalize


class BadExample(ValueError):
    """A dataset line that is not an example (its item fails with this message)."""


@dataclass(frozen=True)
class Example:
    messages: list[dict[str, str]]
    expected: str  # normalized
    id: Any = None


class EvalSpec(BaseModel):
    """How an evaluation job asks and judges (the job's `spec`)."""

    name: str
    dataset_ref: str  # the dataset as the caller named it
    dataset: str  # s3://bucket/key it was read from
    metrics: list[str]
    max_samples: int | None
    per_example_logging: bool
    max_tokens: int
    temperature: float
    budget: int | None = None
    algorithm: str | None = None
    answer_pattern: str | None = None


def parse_example(text: str) -> Example:
    """The example a dataset line holds; BadExample says why a line holds none."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadExample(f"not JSON: {error.msg} at column {error.colno}") from error
    if not isinstance(value, dict):
        raise BadExample("an example must be a JSON object")
    answer = value.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        raise BadExample("an example needs an `answer` (a string or a number)")
    expected = normalize(str(answer))
    if not expected:
        raise BadExample("an example's `answer` is empty")
    messages = value.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            raise BadExample("`messages` must be a non-empty list")
        for message in messages:
            if not (
                isinstance(message, dict)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)
            ):
                raise BadExample("each of `messages` needs a string `role` and `content`")
        chat = [{"role": m["role"], "content": m["content"]} for m in messages]
    else:
        prompt = value.get("prompt", value.get("question"))
        if not isinstance(prompt, str) or not prompt.strip():
            raise BadExample("an example needs a `prompt` or `question` (a string) or `messages`")
        chat = [{"role": "user", "content": prompt}]
    return Example(chat, expected, value.get("id"))


def request_body(example: Example, model: str, spec: EvalSpec) -> dict[str, Any]:
    """The chat completion that asks `example`: the spec's budget and algorithm when it
    scales, else the log-probabilities of the answer's tokens (llama-cpp-python gives
    them only with `top_logprobs`). Never both: the gateway answers a request that asks
    for scaling and log-probabilities unscaled (a scaled answer has none)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": example.messages,
        "max_tokens": spec.max_tokens,
        "temperature": spec.temperature,
    }
    if scales(spec):
        if spec.budget is not None:
            body["budget"] = spec.budget
        if spec.algorithm is not None:
            body["algorithm"] = spec.algorithm
        # The trace (candidates and their answers) goes to the per-example log.
        body["scaling_trace"] = True
        return body
    body["logprobs"] = True
    body["top_logprobs"] = 1
    if spec.budget is not None or spec.algorithm is not None:
        # Asked not to scale (a budget of 1, or `none`): so that the model's own
        # defaults do not scale it either.
        body["algorithm"] = "none"
    return body


def scales(spec: EvalSpec) -> bool:
    """Whether the gateway will scale the examples' requests."""
    return scaled_by(spec.budget, spec.algorithm)


def scaled_by(budget: int | None, algorithm: str | None) -> bool:
    """A budget over 1 under an algorithm other than `none` (without one, the model's
    default algorithm)."""
    return budget is not None and budget > 1 and algorithm != "none"


def scaling_summary(trace: Any) -> dict[str, Any] | None:
    """What the per-example log keeps of a scaled answer's trace: the algorithm, the
    budget, each candidate's answer and the one selected."""
    if not isinstance(trace, dict):
        return None
    candidates = trace.get("candidates")
    return {
        "algorithm": trace.get("algorithm"),
        "budget": trace.get("budget"),
        "selected": trace.get("selected"),
        "candidates": [
            candidate.get("answer")
            for candidate in (candidates if isinstance(candidates, list) else [])
            if isinstance(candidate, dict)
        ],
        "upstream_calls": trace.get("upstream_calls"),
    }


def token_logprobs(choice: dict[str, Any]) -> list[float] | None:
    """The log-probabilities of a chat choice's tokens, or None when it carries none
    (a scaled answer, a server that gives none)."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    values: list[float] = []
    for token in content:
        value = token.get("logprob") if isinstance(token, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        values.append(float(value))
    return values


def judge(example: Example, answer: Any, pattern: str | None) -> dict[str, Any]:
    """The example's record from the gateway's answer: the answer extracted, whether it
    is right, and its loss (the mean negative log-probability per generated token)."""
    try:
        choice = answer["choices"][0]
        text = choice["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as error:
        raise BadExample("the model's answer has no message") from error
    found = extract_answer(text, pattern)
    logprobs = token_logprobs(choice)
    loss = -math.fsum(logprobs) / len(logprobs) if logprobs else None
    return {
        "id": example.id,
        "messages": example.messages,
        "expected": example.expected,
        "completion": text,
        "answer": found,
        "correct": found is not None and normalize(found) == example.expected,
        "loss": loss,
        "tokens": len(logprobs) if logprobs else None,
        "scaling": scaling_summary(answer.get("scaling")),
    }
