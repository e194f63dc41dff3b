"""The Responses API's half of the proxy: `RESPONSES_TRANSLATION` makes a Responses
request a chat completion before the proxy sends it, and wraps the proxy's response in
`TranslatedResponse`, which turns what it sends into the Response (or its events) on the
way out. Everything between (routing, the contract's decision, holding, scaling, usage
and metrics, labelled `/v1/responses`) is the proxy's, unchanged: the usage is read from
the chat completion before it is translated.

Only a 200 is translated: an error is in OpenAI's shape already, and passes as it is.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from modelserve.gateway.asgi import ExchangeResponse
from modelserve.gateway.responses.answers import response_from_chat
from modelserve.gateway.responses.events import StreamTranslator
from modelserve.gateway.responses.requests import chat_request


class TranslatedResponse(ExchangeResponse):
    """`inner` (the proxy's or the scaler's response to the chat completion), sent as
    the Responses API answers `request`."""

    def __init__(self, inner: ExchangeResponse, request: dict[str, Any]) -> None:
        super().__init__()
        self._inner = inner
        self._request = request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner(scope, receive, _Translating(send, self._request).send)

    def abandon(self) -> None:
        self._inner.abandon()


class _Translating:
    """An ASGI `send` that translates the chat answer it is given."""

    def __init__(self, send: Send, request: dict[str, Any]) -> None:
        self._send = send
        self._request = request
        self._mode = "pass"  # "stream", "whole" or "pass", decided by the head
        self._head: Message | None = None
        self._body: list[bytes] = []
        self._stream: StreamTranslator | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            await self._start(message)
        elif message["type"] == "http.response.body" and self._mode == "stream":
            await self._stream_body(message)
        elif message["type"] == "http.response.body" and self._mode == "whole":
            await self._whole_body(message)
        else:
            await self._send(message)

    async def _start(self, message: Message) -> None:
        headers = message.get("headers", [])
        content_type = next(
            (value for name, value in headers if name.lower() == b"content-type"), b""
        )
        if message["status"] != 200:
            self._mode = "pass"
        elif content_type.startswith(b"text/event-stream"):
            self._mode = "stream"
            self._stream = StreamTranslator(self._request)
        else:
            # Held until the whole answer is in: its length changes.
            self._mode, self._head = "whole", message
            return
        await self._send(message)

    async def _stream_body(self, message: Message) -> None:
        assert self._stream is not None
        more = bool(message.get("more_body", False))
        out = self._stream.feed(message.get("body", b""))
        if not more:
            out += self._stream.finish()
        await self._send({"type": "http.response.body", "body": out, "more_body": more})

    async def _whole_body(self, message: Message) -> None:
        self._body.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = translated_body(self._request, b"".join(self._body))
        assert self._head is not None
        headers = [
            (name, value)
            for name, value in self._head.get("headers", [])
            if name.lower() not in (b"content-length", b"content-type")
        ]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ]
        await self._send({**self._head, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


def translated_body(request: dict[str, Any], body: bytes) -> bytes:
    """A whole chat completion's body as the Response's; anything else as it was."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    if not isinstance(answer, dict) or "choices" not in answer:
        return body
    return json.dumps(response_from_chat(request, answer)).encode()


class ResponsesTranslation:
    """What the proxy asks of a translated operation (`proxy_requests.Translation`)."""

    def request(self, payload: dict[str, Any], *, ask_usage: bool) -> dict[str, Any]:
        return chat_request(payload, ask_usage=ask_usage)

    def response(self, inner: ExchangeResponse, payload: dict[str, Any]) -> ExchangeResponse:
        return TranslatedResponse(inner, payload)


RESPONSES_TRANSLATION = ResponsesTranslation()
