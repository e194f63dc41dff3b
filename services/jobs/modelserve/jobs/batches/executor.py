"""The `batch` executor: one line of a batch's input file, sent to the gateway at its url
as the batch's owner (authorised and counted like their online request). A 200 is the
item's output; any other answer fails the item with that answer as its `response`, as
OpenAI reports non-200 answers in a batch's error file."""

from __future__ import annotations

import hashlib
from typing import Any

from modelserve.jobs.executors import ItemFailed
from modelserve.jobs.gateway import Answer, GatewayClient
from modelserve.jobs.store import Item


def request_id(job_id: str, index: int) -> str:
    """A stable id for an item's line in the output files (the same if written again)."""
    return "batch_req_" + hashlib.sha256(f"{job_id}/{index}".encode()).hexdigest()[:32]


def response_of(answer: Answer, job_id: str, index: int) -> dict[str, Any]:
    """OpenAI's `response` of a batch output line."""
    body = answer.body
    answered_id = answer.headers.get("x-request-id") or (
        body.get("id") if isinstance(body, dict) else None
    )
    return {
        "status_code": answer.status,
        "request_id": str(answered_id or request_id(job_id, index)),
        "body": body,
    }


class ResponseFailed(ItemFailed):
    """A request the gateway answered with another status than 200: its response is kept
    with the error."""

    def __init__(self, response: dict[str, Any]) -> None:
        body = response["body"]
        error = body.get("error") if isinstance(body, dict) else None
        code = message = None
        if isinstance(error, dict):
            code, message = error.get("code"), error.get("message")
        super().__init__(
            str(code or f"http_{response['status_code']}"),
            str(message or f"the gateway answered {response['status_code']}"),
        )
        self.response = response

    def as_error(self) -> dict[str, Any]:
        return {**super().as_error(), "response": self.response}


class BatchExecutor:
    def __init__(self, gateway: GatewayClient) -> None:
        self._gateway = gateway

    async def __call__(self, item: Item) -> Any:
        line = item.input
        if "error" in line:
            raise ItemFailed(line["error"]["code"], line["error"]["message"])
        answer = await self._gateway.send(
            line["url"],
            line["body"],
            owner=item.job_owner,
            key_id=item.key_id,
            since=item.job_queued_at,
        )
        response = response_of(answer, item.job_id, item.index)
        if answer.status != 200:
            raise ResponseFailed(response)
        return response
