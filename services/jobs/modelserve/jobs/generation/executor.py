"""The `generate` executor: one item is one prompt, sent as the user's message of a chat
completion through the gateway as the job's owner; its output is the text."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from modelserve.jobs.executors import ItemFailed
from modelserve.jobs.gateway import GatewayClient
from modelserve.jobs.store import Item


class GenerateSpec(BaseModel):
    """How a generation job samples (the job's `spec`)."""

    max_tokens: int
    temperature: float
    top_p: float


def generation_body(prompt: str, model: str, spec: GenerateSpec) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": spec.max_tokens,
        "temperature": spec.temperature,
        "top_p": spec.top_p,
    }


def generation(answer: Any) -> dict[str, Any]:
    """The item's output from the gateway's answer: the text, why it ended, the usage."""
    try:
        choice = answer["choices"][0]
        text = choice["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as error:
        raise ItemFailed("bad_answer", "the model's answer has no message") from error
    return {
        "text": text,
        "finish_reason": choice.get("finish_reason"),
        "usage": answer.get("usage"),
    }


class GenerateExecutor:
    def __init__(self, gateway: GatewayClient) -> None:
        self._gateway = gateway

    async def __call__(self, item: Item) -> Any:
        spec = GenerateSpec.model_validate(item.spec)
        body = generation_body(item.input["prompt"], item.model or "", spec)
        answer = await self._gateway.post(
            "/v1/chat/completions",
            body,
            owner=item.job_owner,
            key_id=item.key_id,
            since=item.job_queued_at,
        )
        return generation(answer)
