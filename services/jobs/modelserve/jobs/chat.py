"""The `chat` executor: an item is an OpenAI chat completions body, sent to the gateway
with the jobs service's token; its output is the gateway's answer. The gateway applies
the same policy and accounting as to an online request."""

from __future__ import annotations

from typing import Any

import httpx

from modelserve.common.tokens import TokenSigner
from modelserve.jobs.executors import ItemFailed, ItemRetry

SERVICE_NAME = "jobs"


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
    def __init__(self, http: httpx.AsyncClient, gateway_url: str, signer: TokenSigner) -> None:
        self._http = http
        self._url = gateway_url.rstrip("/") + "/v1/chat/completions"
        self._signer = signer

    async def __call__(self, item: Any) -> Any:
        problem = check_chat_body(item)
        if problem is not None:
            raise ItemFailed("invalid_item", problem)
        headers = {"Authorization": f"Bearer {self._signer.service_token(SERVICE_NAME)}"}
        try:
            answer = await self._http.post(self._url, json=item, headers=headers)
        except httpx.HTTPError as error:
            raise ItemRetry(
                "gateway_unreachable", f"the gateway is unreachable: {error}"
            ) from error
        if answer.status_code == 429 or answer.status_code >= 500:
            raise ItemRetry(
                "gateway_busy", f"the gateway answered {answer.status_code}: {answer.text[:500]}"
            )
        if answer.status_code != 200:
            raise ItemFailed(
                "request_refused",
                f"the gateway answered {answer.status_code}: {answer.text[:500]}",
            )
        try:
            return answer.json()
        except ValueError as error:
            raise ItemRetry("bad_answer", "the gateway's answer is not JSON") from error
