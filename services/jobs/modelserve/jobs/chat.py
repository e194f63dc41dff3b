"""The `chat` executor: an item is an OpenAI chat completions body, sent to the gateway
as the job's owner; its output is the gateway's answer. The gateway applies the same
policy and accounting as to the owner's online request."""

from __future__ import annotations

from typing import Any

from modelserve.jobs.executors import ItemFailed
from modelserve.jobs.gateway import GatewayClient
from modelserve.jobs.store import Item


def check_chat_body(body: Any) -> str | None:
    """Why `body` is not a chat completions request, or None when it is one."""
    if not isinstance(body, dict):
        return "an item must be a JSON object (an OpenAI chat completions body)"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "an item needs a `model`"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "an item needs a non-empty list of `messages`"
    if body.get("stream"):
        return "items cannot be streamed (`stream` must be false)"
    return None


class ChatExecutor:
    def __init__(self, gateway: GatewayClient) -> None:
        self._gateway = gateway

    async def __call__(self, item: Item) -> Any:
        problem = check_chat_body(item.input)
        if problem is not None:
            raise ItemFailed("invalid_item", problem)
        return await self._gateway.post(
            "/v1/chat/completions",
            item.input,
            owner=item.job_owner,
            key_id=item.key_id,
            since=item.job_queued_at,
        )
