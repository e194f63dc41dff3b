"""What a chat completion asks of inference-time scaling, over its model's defaults.

A request names `budget` and `algorithm` (the seeds' `alg` too) as body fields (the
openai SDK's `extra_body`) or as headers (X-ModelServe-Budget, X-ModelServe-Algorithm);
the body wins. What it leaves out comes from the ModelServe's `spec.scaling`. A budget
of 1 or the algorithm `none` is a plain pass-through. `scaling_trace: true` (or
X-ModelServe-Trace: 1) adds the algorithm's trace to the answer, in `scaling`.

A request that uses tools, several choices (`n`) or log-probabilities is answered
unscaled (`unscalable_reason`): the algorithms compare candidates by their text, and
would drop what the client asked for.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from modelserve.common.modelserve import Aggregation, Algorithm, RewardKind, Scaling
from modelserve.gateway.openai_errors import OpenAIError

BUDGET_HEADER = "x-modelserve-budget"
ALGORITHM_HEADER = "x-modelserve-algorithm"
TRACE_HEADER = "x-modelserve-trace"
# On the answer to a request that asked for scaling and was answered unscaled: why.
UNSCALED_HEADER = "x-modelserve-unscaled"
# Body fields of ours: taken out before a request goes to a model server.
FIELDS = ("budget", "algorithm", "alg", "scaling_trace")
MAX_BUDGET = 1024


@dataclasses.dataclass(frozen=True)
class ScalingRequest:
    algorithm: Algorithm
    budget: int
    trace: bool
    reward: RewardKind
    reward_model: str | None
    aggregation: Aggregation
    answer_pattern: re.Pattern[str] | None
    step_delimiter: str
    # Why a request that asked for scaling goes unscaled (`unscalable_reason`), or None.
    unscaled: str | None = None

    @property
    def active(self) -> bool:
        return self.algorithm is not Algorithm.NONE and self.budget > 1 and self.unscaled is None


def _invalid(message: str, param: str) -> OpenAIError:
    return OpenAIError(400, message, code="invalid_scaling", param=param)


def _budget(value: Any, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BUDGET:
        raise _invalid(f"budget must be an integer from 1 to {MAX_BUDGET}", param)
    return value


def _algorithm(value: Any, param: str) -> Algorithm:
    try:
        return Algorithm(str(value).strip().lower())
    except ValueError:
        names = ", ".join(algorithm.value for algorithm in Algorithm)
        raise _invalid(f"unknown algorithm {value!r}; one of {names}", param) from None


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes")


def answer_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """The model's answer pattern, compiled; one with no group is used whole."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        # The CRD lets any string through: a bad pattern is the model owner's mistake,
        # said to whoever hits it.
        raise OpenAIError(
            500, f"the model's answerPattern does not compile: {error}", code="bad_model_config"
        ) from error


def unscalable_reason(payload: Mapping[str, Any]) -> str | None:
    """Why a chat completion must go to its model server unscaled, or None when scaling
    keeps its answer's shape: `tools` (tools or functions offered, or a `tool_choice`
    other than "none"), `n` (several choices), `logprobs` (log-probabilities asked for);
    the first that applies, in that order. The algorithms choose one candidate by its text:
    tool calls, several choices and one candidate's logprobs would be lost."""
    offered = any(
        isinstance(payload.get(field), list) and payload[field] for field in ("tools", "functions")
    )
    if offered or payload.get("tool_choice", "none") not in ("none", None):
        return "tools"
    n = payload.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        return "n"
    if payload.get("logprobs") is True or payload.get("top_logprobs") is not None:
        return "logprobs"
    return None


def scaling_request(
    payload: dict[str, Any], headers: Mapping[str, str], defaults: Scaling
) -> ScalingRequest:
    """The request's scaling, its own fields taken out of `payload`. 400 for a bad value.
    One that asks for scaling but cannot have it says why in `unscaled`, and is not
    `active`: it goes on as a plain request (the model's answer pattern is not read)."""
    body = {field: payload.pop(field) for field in FIELDS if field in payload}
    budget = defaults.budget
    if BUDGET_HEADER in headers:
        digits = headers[BUDGET_HEADER].strip()
        header = int(digits) if digits.isascii() and digits.isdigit() else digits
        budget = _budget(header, BUDGET_HEADER)
    if "budget" in body:
        budget = _budget(body["budget"], "budget")
    algorithm = defaults.algorithm
    if ALGORITHM_HEADER in headers:
        algorithm = _algorithm(headers[ALGORITHM_HEADER], ALGORITHM_HEADER)
    for field in ("alg", "algorithm"):
        if field in body:
            algorithm = _algorithm(body[field], field)
    trace = _flag(body.get("scaling_trace", headers.get(TRACE_HEADER, False)))
    reward = defaults.reward or (RewardKind.MODEL if defaults.reward_model else RewardKind.LOGPROB)
    asked = algorithm is not Algorithm.NONE and budget > 1
    unscaled = unscalable_reason(payload) if asked else None
    active = asked and unscaled is None
    return ScalingRequest(
        algorithm=algorithm,
        budget=budget,
        trace=trace,
        reward=reward,
        reward_model=defaults.reward_model,
        aggregation=defaults.reward_aggregation,
        # Only a scaled request reads it: a bad pattern must not fail plain requests.
        answer_pattern=answer_pattern(defaults.answer_pattern) if active else None,
        step_delimiter=defaults.step_delimiter,
        unscaled=unscaled,
    )
