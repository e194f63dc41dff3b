"""The `eval` executor: one item is one dataset line, asked through the gateway as the
job's owner and judged (`examples`). A line that is no example fails its item with the
line's number and the reason; the job goes on."""

from __future__ import annotations

from typing import Any

from modelserve.jobs.evaluation.examples import (
    BadExample,
    EvalSpec,
    judge,
    parse_example,
    request_body,
)
from modelserve.jobs.executors import ItemFailed
from modelserve.jobs.gateway import GatewayClient
from modelserve.jobs.store import Item


class EvalExecutor:
    def __init__(self, gateway: GatewayClient) -> None:
        self._gateway = gateway

    async def __call__(self, item: Item) -> Any:
        spec = EvalSpec.model_validate(item.spec)
        line, text = item.input["line"], item.input["text"]
        try:
            example = parse_example(text)
        except BadExample as error:
            raise ItemFailed("invalid_example", f"line {line}: {error}") from error
        answer = await self._gateway.post(
            "/v1/chat/completions",
            request_body(example, item.model or "", spec),
            owner=item.job_owner,
            key_id=item.key_id,
            since=item.job_queued_at,
        )
        try:
            return judge(example, answer, spec.answer_pattern)
        except BadExample as error:
            raise ItemFailed("bad_answer", f"line {line}: {error}") from error
