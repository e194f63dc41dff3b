"""Forwarding an OpenAI request to a server of its model, and the answer back as it comes.

Two doors lead here, and everything past the choice of the server is the same for both:
`/v1/…` finds a server of the body's `model`, and a server's own path `/{server_id}/v1/…`
(where Traefik's per-server route leads) names the server by id and fills in its served
name when the body has no `model`.

The proxy reads and checks the body (size, JSON, `model`, the fields the operation
needs) and finds the target in the route table (`proxy_requests`); with a contract
service, it gets the inference decided; then it returns a `ProxyResponse`, which does
the exchange with an endpoint of the server (`dispatch`: chosen per request, another
one when a connection is refused) while the gateway's server sends the answer:

- the body goes upstream as the client sent it (extra fields such as `logprobs`,
  `echo`, `top_k` pass through), except that a stream is asked for its usage;
- a stream is passed on chunk by chunk as it arrives; a whole answer is read first, so
  that a server failing half-way still gets a clean 502;
- a client that goes away cancels the exchange, which closes the upstream connection:
  the model server stops generating for nobody;
- a request for an autoscaled server that does not serve right now (asleep, loading,
  being put to sleep) is held until it does (`loading.holding`), after the contract's
  decision (a request the contract refuses never wakes a model): a stream gets its head
  and keep-alive comments while it waits, and an error event if the wait fails;
- failures of the model server become OpenAI-shaped 502 (unreachable, 5xx) or 504
  (timeout), 503 and 504 answers keep their status (and Retry-After): the client gets a
  message that names the server and its status, never the server's body (a traceback,
  file paths), which goes to the gateway's log; its own 4xx answers (a prompt too long,
  ...) pass through unchanged;
- a completion request with a list of several prompts goes to a vLLM server as it is,
  and to any other as one request per prompt (`prompt_lists`, `fanout`: llama.cpp's
  servers take one prompt), merged into one answer; its tokens are reserved for every
  prompt. A stream of such a list is refused (400); completions are never scaled;
- a chat completion that asks for scaling but uses tools, `n` or logprobs (which the
  algorithms would drop) goes on as a plain one, its answer's head saying why
  (X-ModelServe-Unscaled) and the metric `scaling_skipped` counting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import Request, Response
from starlette.types import Message, Receive, Scope, Send

from modelserve.common.online_pressure import is_background, signal_headers
from modelserve.common.request_ids import current_request_id, model_server_request_id
from modelserve.common.tokens import Claims
from modelserve.gateway.accounting import Accounting, ContractUnavailable, Decision
from modelserve.gateway.adapters import adapter_body, same_view
from modelserve.gateway.asgi import CLIENT_CLOSED, ExchangeResponse, client_gone, send_json
from modelserve.gateway.dispatch import Dispatcher, NoReadyEndpoint
from modelserve.gateway.fanout import Whole, fan_out
from modelserve.gateway.jobs.pressure import OnlinePressure
from modelserve.gateway.loading.holding import Holder
from modelserve.gateway.media_urls import MediaRules, MediaUrls
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.openai_errors import OpenAIError, error_type, openai_body
from modelserve.gateway.prompt_lists import (
    fanned_out,
    merge_answers,
    merged_usage,
    prompt_count,
    split_bodies,
)
from modelserve.gateway.proxy_requests import (
    NOT_SERVED_STATUSES,
    Operation,
    answers_per_prompt,
    check_served,
    compact,
    invalid,
    max_tokens,
    not_served,
    parse_body,
    read_body,
    routed,
    server_for,
)
from modelserve.gateway.routing import RouteTable, Target
from modelserve.gateway.scaled import ScaledExchange, Scaler
from modelserve.gateway.scaling_requests import FIELDS as SCALING_FIELDS
from modelserve.gateway.scaling_requests import (
    UNSCALED_HEADER,
    ScalingRequest,
    scaling_request,
)
from modelserve.gateway.upstream import UpstreamError, UpstreamResponse
from modelserve.gateway.usage import StreamMeter, Usage, inject_usage, usage_from_body

logger = logging.getLogger(__name__)
# Denials that a wait can lift answer 429 (OpenAI's RateLimitError); the others 403.
RATE_REASONS = frozenset({"request_rate_exceeded", "token_rate_exceeded", "token_budget_exhausted"})
# The request headers a model server gets from the client; never its Authorization. Its
# X-Request-ID is the request's id (`request_ids`: the client's if it was safe, else new).
_PASSED_HEADERS = ("accept",)
# The head of a stream sent before the model server's (while a request is held).
_STREAM_HEAD = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Proxy:
    def __init__(
        self,
        table: RouteTable,
        dispatcher: Dispatcher,
        metrics: GatewayMetrics,
        *,
        max_body_bytes: int,
        inject_stream_usage: bool,
        media: MediaUrls | None = None,
        accounting: Accounting | None = None,
        scaler: Scaler | None = None,
        holder: Holder | None = None,
        fanout_concurrency: int = 8,
        pressure: OnlinePressure | None = None,
    ) -> None:
        self.table = table
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.accounting = accounting
        self.scaler = scaler
        self.holder = holder
        self._max_body = max_body_bytes
        self._inject = inject_stream_usage
        # The media URLs a model server would fetch: checked before anything else.
        self.media = media or MediaUrls(MediaRules())
        self.fanout_concurrency = fanout_concurrency
        # Online requests and their latency per model, told to job items (jobs/pressure).
        self.pressure = pressure or OnlinePressure()

    async def forward(self, request: Request, claims: Claims, operation: Operation) -> Response:
        """A request of `/v1/…`: to a server of its `model` that the caller may use."""
        started = time.perf_counter()
        body = await read_body(request, self._max_body)
        payload = parse_body(body, operation, content_type=request.headers.get("content-type"))
        model: str = payload["model"]
        found = routed(self.table.lookup(model, claims), model)
        return await self._send(request.headers, claims, operation, found, payload, body, started)

    async def forward_to_server(
        self, request: Request, claims: Claims, operation: Operation, server_id: str
    ) -> Response:
        """A request of a server's own path: to that server, whatever `model` it names
        (none: the server's served name; one of its adapters: that adapter; another: 400)."""
        started = time.perf_counter()
        target = server_for(self.table, server_id, claims)
        target = routed(self.table.readiness(target), target.served_name)
        operation = operation.on_server()
        body = await read_body(request, self._max_body)
        payload = parse_body(
            body, operation, model_required=False, content_type=request.headers.get("content-type")
        )
        if "model" not in payload:
            payload["model"] = target.served_name
            body = compact(payload)
        elif payload["model"] != target.served_name:
            adapter = target.as_adapter(payload["model"])
            if adapter is not None:  # one of the server's adapters (spec.adapters)
                return await self._send(
                    request.headers, claims, operation, adapter, payload, body, started
                )
            raise invalid(
                f"the server {server_id} serves the model {target.served_name!r}, not "
                f"{payload['model']!r}: leave `model` out, or name that one",
                param="model",
                code="model_mismatch",
            )
        return await self._send(request.headers, claims, operation, target, payload, body, started)

    async def respond(
        self,
        claims: Claims,
        operation: Operation,
        target: Target,
        payload: dict[str, Any],
        headers: Mapping[str, str],
    ) -> ExchangeResponse:
        """The response to a request the gateway makes itself for the caller of `claims`
        (the arena's answers): `payload` (a checked body of `operation`) to `target`, a
        server the caller may use, exactly as if they had sent it, contract and all. Not
        sent yet: the caller runs it (an ASGI response), or `abandon`s it."""
        return await self._send(
            headers, claims, operation, target, payload, compact(payload), time.perf_counter()
        )

    async def _send(
        self,
        headers_in: Mapping[str, str],
        claims: Claims,
        operation: Operation,
        found: Target,
        payload: dict[str, Any],
        body: bytes,
        started: float,
    ) -> ExchangeResponse:
        """An operation the target's runtime lacks is refused here; one of another API
        (Responses) goes on as the chat completion it translates into, and its answer is
        translated back on the way out."""
        check_served(operation, found)
        translation = operation.translation
        if translation is None:
            return await self._send_as_is(
                headers_in, claims, operation, found, payload, body, started
            )
        chat = translation.request(payload, ask_usage=self._inject)
        response = await self._send_as_is(
            headers_in, claims, operation, found, chat, compact(chat), started
        )
        return translation.response(response, payload)

    async def _send_as_is(
        self,
        headers_in: Mapping[str, str],
        claims: Claims,
        operation: Operation,
        found: Target,
        payload: dict[str, Any],
        body: bytes,
        started: float,
    ) -> ExchangeResponse:
        """Past the choice of the server, both doors alike: scaling, the contract's
        decision, then (held until the server serves, for an autoscaled one that does
        not yet) the exchange with an endpoint of `found`."""
        await self.media.check(payload)
        body = adapter_body(found, payload, body, form=operation.multipart)
        model = found.served_name
        prompts = prompt_count(payload) if operation.prompt_lists else 1
        parts = None
        if prompts > 1 and fanned_out(found.runtime, payload):
            if payload.get("stream") is True:
                raise invalid(
                    f"the server of {model!r} takes one prompt a request: a list of prompts "
                    "is answered whole, not streamed; leave `stream` out, or send one "
                    "prompt a request",
                    param="stream",
                    code="stream_with_prompt_list",
                )
            parts = split_bodies(payload)
        if self.holder is not None and self.holder.needed(found):
            # Before the contract reserves anything. Whether the request is held is
            # decided again right before it goes upstream (`_exchange_with`).
            self.holder.check_room(found)
        unscaled = None
        if operation.scalable:
            # Inference-time scaling: its fields are ours, never a model server's.
            ours = any(field in payload for field in SCALING_FIELDS)
            scaling = scaling_request(payload, headers_in, found.scaling)
            if ours:
                body = compact(payload)
            if scaling.active and self.scaler is not None:
                decision = await self._decide(claims, found, payload, scaling)
                return self.scaler.response(
                    ScaledExchange(
                        found,
                        claims,
                        payload,
                        scaling,
                        decision,
                        started,
                        operation.route,
                    )
                )
            if self.scaler is not None:
                # Never a silent change of the API: a request that scaling would strip
                # of what it asked for goes on as if it had asked for no scaling.
                unscaled = scaling.unscaled
        decision = await self._decide(claims, found, payload, None, prompts)
        if unscaled is not None:
            # Counted once the contract let it go on, as the request it became.
            self.metrics.scaling_skipped_of(model, unscaled).inc()
        stream = payload.get("stream") is True
        strip_usage = False
        if stream and self._inject and inject_usage(payload):
            strip_usage = True
            body = compact(payload)
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if operation.multipart:
            # A form goes on as it came: its boundary is in its content type.
            headers["Content-Type"] = headers_in.get("content-type", "")
        for name in _PASSED_HEADERS:
            value = headers_in.get(name)
            if value is not None:
                headers[name] = value
        request_id = current_request_id()
        if request_id is not None:
            headers["x-request-id"] = model_server_request_id(request_id)
        if found.api_key:
            headers["Authorization"] = f"Bearer {found.api_key}"
        return ProxyResponse(
            self,
            Exchange(
                target=found,
                operation=operation,
                claims=claims,
                body=body,
                headers=headers,
                stream=stream,
                strip_usage=strip_usage,
                decision=decision,
                started=started,
                parts=parts,
                per_prompt=payload["n"] if isinstance(payload.get("n"), int) else 1,
                background=is_background(headers_in),
                unscaled=unscaled,
            ),
        )

    async def _decide(
        self,
        claims: Claims,
        found: Target,
        payload: dict[str, Any],
        scaling: ScalingRequest | None,
        prompts: int = 1,
    ) -> Decision | None:
        """The contract's word; a scaled request holds tokens for all its candidates, a
        list of prompts for every prompt, and each prompt for every answer of it (`n`)."""
        if self.accounting is None:
            return None
        model = found.served_name
        tokens = max_tokens(payload)
        budget = None
        if scaling is not None and self.scaler is not None:
            budget = scaling.budget
            tokens = self.scaler.reservation(tokens, scaling)
        else:
            prompts *= answers_per_prompt(payload)
        try:
            decision = await self.accounting.ledger.decide(
                claims,
                model,
                tokens,
                budget,
                prompts=prompts,
                server_owner=found.owner,
                server_team=found.team,
            )
        except ContractUnavailable as error:
            raise OpenAIError(
                503,
                f"this request cannot be checked against your contract right now: {error}",
                code="contract_unavailable",
                headers={"Retry-After": "1"},
                model=model,
            ) from error
        if not decision.allowed:
            status = 429 if decision.reason in RATE_REASONS else 403
            raise OpenAIError(status, decision.message, code=decision.reason, model=model)
        return decision


@dataclasses.dataclass
class Exchange:
    """One proxied request, and what became of it."""

    target: Target
    operation: Operation
    claims: Claims
    body: bytes
    headers: dict[str, str]
    stream: bool
    strip_usage: bool
    decision: Decision | None
    started: float
    status: int = 500  # until the exchange says otherwise
    usage: Usage | None = None
    delivered: bool = False  # the client has had the whole answer
    head_sent: bool = False  # a held stream's head went out before the server's answer
    parts: list[bytes] | None = None  # one body per prompt, when fanned out
    per_prompt: int = 1  # choices per prompt (`n`), for the merged answer's indexes
    background: bool = False  # a job item: not online traffic, told the online signal
    unscaled: str | None = None  # why a request that asked for scaling was not scaled


class ProxyResponse(ExchangeResponse):
    """The answer of the model server, fetched while it is sent (an ASGI response)."""

    def __init__(self, proxy: Proxy, exchange: Exchange) -> None:
        super().__init__()
        self._proxy = proxy
        self._exchange = exchange

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        proxy, exchange = self._proxy, self._exchange
        target = exchange.target
        model, route = target.served_name, exchange.operation.route
        in_flight = proxy.metrics.in_flight_of(model)
        in_flight.inc()
        if exchange.background:
            send = self._with_head(send, lambda: signal_headers(proxy.pressure.signal(model)))
        else:
            proxy.pressure.started(model)
        unscaled = exchange.unscaled
        if unscaled is not None:
            # Every head this exchange sends (a held stream's too) says it.
            send = self._with_head(send, lambda: {UNSCALED_HEADER: unscaled})
        work = asyncio.ensure_future(self._exchange_with(send))
        # The body was read: what `receive` says next is that the client went away.
        watcher = asyncio.ensure_future(client_gone(receive))
        watcher.add_done_callback(lambda _: work.cancel())
        try:
            await work
        except asyncio.CancelledError:
            work.cancel()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the server is shutting down, not just the client leaving
            if not exchange.delivered:
                # A client may close a stream once it read `[DONE]` (openai's does),
                # before the model server's body ends: that one was answered.
                exchange.status = CLIENT_CLOSED
        finally:
            watcher.cancel()
            in_flight.dec()
            proxy.metrics.requests_of(model, route, str(exchange.status)).inc()
            proxy.metrics.duration_of(model, route).observe(time.perf_counter() - exchange.started)
            if not exchange.background:
                ok = exchange.status == 200 and exchange.usage is not None
                proxy.pressure.finished(
                    model,
                    time.perf_counter() - exchange.started if ok else None,
                    exchange.usage.completion_tokens if exchange.usage else None,
                )
            self._account()
        if self.background is not None:
            await self.background()

    def abandon(self) -> None:
        """Never to be sent: what the contract reserved for it comes back now."""
        self._account()

    @staticmethod
    def _with_head(send: Send, extra_headers: Callable[[], Mapping[str, str]]) -> Send:
        """`send` that adds `extra_headers()` (made when the head goes out: the model's
        online signal is read then) to the answer's head."""

        async def signalled(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = extra_headers()
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        *((k.lower().encode(), v.encode()) for k, v in extra.items()),
                    ],
                }
            await send(message)

        return signalled

    async def _exchange_with(self, send: Send) -> None:
        proxy, exchange = self._proxy, self._exchange
        # Held or not is decided here, by the table as it is now (the contract's answer
        # and the response's start were awaited since the lookup: a drain may have come),
        # and nothing is awaited from that check until the dispatcher counts the request
        # in the book: a drain seen after it finds the request in flight.
        while proxy.holder is not None and proxy.holder.needed(exchange.target):
            if not await self._wait_held(send):
                return
        if exchange.parts is not None:
            await self._fan_out(send, exchange.parts)
            return
        async with contextlib.AsyncExitStack() as stack:
            # The endpoint counts the request in flight until the stack closes.
            try:
                answer = await stack.enter_async_context(
                    proxy.dispatcher.exchange(
                        exchange.target,
                        exchange.operation.path,
                        exchange.body,
                        exchange.headers,
                        from_root=exchange.operation.from_root,
                    )
                )
            except NoReadyEndpoint as error:
                exchange.status = error.status_code
                body = openai_body(error.message, type=error.type, code=error.code)
                await self._send_error(send, error.status_code, body, dict(error.headers or {}))
                return
            except UpstreamError as error:
                await self._fail(send, error, "upstream_unreachable")
                return
            completed = False
            try:
                if exchange.operation.optional and answer.status in NOT_SERVED_STATUSES:
                    completed = await self._not_served(send, answer)
                elif answer.status >= 500:
                    completed = await self._fail_status(send, answer)
                elif 300 <= answer.status < 400:
                    completed = await self._fail_redirect(send, answer)
                elif exchange.stream and answer.content_type == "text/event-stream":
                    completed = await self._relay_stream(send, answer)
                else:
                    completed = await self._relay_whole(send, answer)
            finally:
                # A connection whose answer was not read to its end cannot serve another.
                if completed:
                    answer.release()
                else:
                    answer.abort()

    async def _wait_held(self, send: Send) -> bool:
        """Hold the request until its server serves: True to go on, False when the
        client had its error. A stream gets its head now and keep-alives meanwhile."""
        holder, exchange = self._proxy.holder, self._exchange
        assert holder is not None
        try:
            async with holder.hold(exchange.target) as hold:
                tick = None
                if exchange.stream:
                    exchange.status, exchange.head_sent = 200, True
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": _STREAM_HEAD}
                    )

                    async def tick() -> None:
                        await send(
                            {
                                "type": "http.response.body",
                                "body": b": the model is loading\n\n",
                                "more_body": True,
                            }
                        )

                exchange.target = same_view(exchange.target, await hold.ready(tick))
        except OpenAIError as error:
            exchange.status = error.status_code
            body = openai_body(error.message, type=error.type, code=error.code)
            await self._send_error(send, error.status_code, body, dict(error.headers or {}))
            return False
        return True

    async def _send_error(
        self, send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None
    ) -> None:
        """An error as JSON; as an event that ends the stream once a held stream's head
        is out (the way OpenAI's clients read errors in a stream)."""
        if not self._exchange.head_sent:
            await send_json(send, status, body, headers)
            return
        await send({"type": "http.response.body", "body": f"data: {json.dumps(body)}\n\n".encode()})

    async def _relay_whole(self, send: Send, answer: UpstreamResponse) -> bool:
        exchange = self._exchange
        try:
            body = await answer.read()
        except UpstreamError as error:
            await self._fail(send, error, "upstream_broken")
            return False
        if answer.status == 200:
            exchange.usage = usage_from_body(body)
        exchange.status = answer.status
        if exchange.head_sent:
            # A held stream whose server answered without one (an error, as JSON).
            event = body if answer.status == 200 else _error_event(body, answer.status)
            await send({"type": "http.response.body", "body": event})
            return True
        headers = [*answer.headers, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True

    async def _relay_stream(self, send: Send, answer: UpstreamResponse) -> bool:
        """Chunks as they arrive; True when the server finished its answer."""
        proxy, exchange = self._proxy, self._exchange
        model, route = exchange.target.served_name, exchange.operation.route
        meter = StreamMeter(strip_usage=exchange.strip_usage)
        exchange.status = answer.status
        if not exchange.head_sent:
            await send(
                {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
            )
        first = True
        try:
            async for chunk in answer.chunks():
                if first:
                    first = False
                    elapsed = time.perf_counter() - exchange.started
                    proxy.metrics.first_token_of(model, route).observe(elapsed)
                passed = meter.feed(chunk)
                if passed:
                    await send({"type": "http.response.body", "body": passed, "more_body": True})
                exchange.delivered = meter.done
        except UpstreamError as error:
            # The head is out: say it the way OpenAI's clients read errors in a stream.
            self._report(error)
            event = json.dumps(openai_body(str(error), type="server_error", code="upstream_broken"))
            await send({"type": "http.response.body", "body": f"data: {event}\n\n".encode()})
            return False
        finally:
            exchange.usage = meter.reported()
        await send({"type": "http.response.body", "body": meter.finish()})
        return True

    async def _not_served(self, send: Send, answer: UpstreamResponse) -> bool:
        """A pass-through the model server does not serve (404, 405, 501): the client's
        404 says so, in OpenAI's shape; True when its answer was read to the end."""
        exchange = self._exchange
        try:
            text, read = (await answer.read())[:500].decode(errors="replace"), True
        except UpstreamError:
            text, read = "", False
        logger.info(
            "model server of %s/%s does not serve %s (%d): %s",
            exchange.target.namespace,
            exchange.target.name,
            exchange.operation.path,
            answer.status,
            text,
        )
        error = not_served(exchange.operation, exchange.target, answer.status)
        exchange.status = error.status_code
        body = openai_body(error.message, type=error.type, code=error.code)
        await self._send_error(send, error.status_code, body, None)
        return read

    async def _fail_status(self, send: Send, answer: UpstreamResponse) -> bool:
        """A 5xx of the model server: what it said goes to the log, never to the client
        (a traceback, file paths); True when its answer was read to the end."""
        try:
            text, read = (await answer.read())[:2000].decode(errors="replace"), True
        except UpstreamError:
            text, read = "", False
        await self._fail_with(send, answer.status, answer.headers, text)
        return read

    async def _fail_with(
        self, send: Send, status: int, answer_headers: list[tuple[bytes, bytes]], text: str
    ) -> None:
        target = self._exchange.target
        error = UpstreamError(
            f"the model server {target.namespace}/{target.name} failed on this request "
            f"(it answered {status})",
            f"{status}: {text}" if text else str(status),
        )
        error.kind = "status"
        # 503 (overloaded, starting) and 504 keep their status and Retry-After: clients
        # retry those; any other 5xx is the gateway's bad gateway.
        if status in (503, 504):
            error.status = status
        headers: dict[str, str] = {}
        for name, value in answer_headers:
            if name.lower() == b"retry-after" and error.status == 503:
                headers["Retry-After"] = value.decode("latin-1")
        await self._fail(send, error, "upstream_error", headers)

    async def _fan_out(self, send: Send, parts: list[bytes]) -> None:
        """One request per prompt, their answers merged (`fanout`); the first failure
        of a part is the answer, as a single request's would be."""
        proxy, exchange = self._proxy, self._exchange
        result = await fan_out(
            proxy.dispatcher,
            exchange.target,
            exchange.operation.path,
            parts,
            exchange.headers,
            concurrency=proxy.fanout_concurrency,
        )
        merged = merge_answers(result.in_order(), exchange.per_prompt)
        # The prompts that were answered are paid for, even when another one failed.
        exchange.usage = merged_usage(merged)
        error = result.error
        if isinstance(error, NoReadyEndpoint):
            exchange.status = error.status_code
            body = openai_body(error.message, type=error.type, code=error.code)
            await self._send_error(send, error.status_code, body, dict(error.headers or {}))
            return
        if error is not None:
            await self._fail(send, error, "upstream_unreachable")
            return
        if result.failed is not None or result.first is None:
            failed = result.failed or Whole(502, [], b"")
            await self._part_failed(send, failed)
            return
        content = json.dumps(merged).encode()
        exchange.status = 200
        headers = [
            *(item for item in result.first.headers if item[0].lower() != b"content-type"),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(content)),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _part_failed(self, send: Send, part: Whole) -> None:
        """A prompt's failed answer: a 5xx or 3xx as the proxy says them, a 4xx (a prompt
        too long, ...) as the server wrote it."""
        if part.status >= 500:
            text = part.body[:2000].decode(errors="replace")
            await self._fail_with(send, part.status, part.headers, text)
            return
        if part.status < 400:
            error = UpstreamError(
                f"the model server {self._exchange.target.namespace}/"
                f"{self._exchange.target.name} answered with a redirect ({part.status}), "
                "which the gateway does not follow",
                str(part.status),
            )
            error.kind = "redirect"
            await self._fail(send, error, "upstream_redirect")
            return
        self._exchange.status = part.status
        headers = [*part.headers, (b"content-length", b"%d" % len(part.body))]
        await send({"type": "http.response.start", "status": part.status, "headers": headers})
        await send({"type": "http.response.body", "body": part.body})

    async def _fail_redirect(self, send: Send, answer: UpstreamResponse) -> bool:
        """A 3xx of the model server: not followed (it could send the request and the
        server's key anywhere), not relayed (its Location is the server's business)."""
        try:
            await answer.read()
            read = True
        except UpstreamError:
            read = False
        target = self._exchange.target
        location = next(
            (
                value.decode("latin-1")
                for name, value in answer.headers
                if name.lower() == b"location"
            ),
            "",
        )
        error = UpstreamError(
            f"the model server {target.namespace}/{target.name} answered with a redirect "
            f"({answer.status}), which the gateway does not follow",
            f"{answer.status} to {location!r}",
        )
        error.kind = "redirect"
        await self._fail(send, error, "upstream_redirect")
        return read

    async def _fail(
        self, send: Send, error: UpstreamError, code: str, headers: dict[str, str] | None = None
    ) -> None:
        self._report(error)
        self._exchange.status = error.status
        if error.status == 504:
            code = "upstream_timeout"
        body = openai_body(str(error), type=error_type(error.status), code=code)
        await self._send_error(send, error.status, body, headers)

    def _report(self, error: UpstreamError) -> None:
        """A failure of the model server, into the log and the metrics."""
        target = self._exchange.target
        self._proxy.metrics.upstream_errors.labels(target.served_name, error.kind).inc()
        logger.warning(
            "model server of %s/%s failed (%s): %s",
            target.namespace,
            target.name,
            error.kind,
            error.detail,
        )

    def _account(self) -> None:
        """Tokens into the metrics, and to the contract service (queued, never awaited)."""
        proxy, exchange = self._proxy, self._exchange
        usage = exchange.usage or Usage()
        model = exchange.target.served_name
        proxy.metrics.record_tokens(
            exchange.claims.sub, model, usage.prompt_tokens, usage.completion_tokens
        )
        if proxy.accounting is not None:
            proxy.accounting.settle(
                exchange.claims,
                model,
                exchange.decision,
                usage.prompt_tokens,
                usage.completion_tokens,
            )


def _error_event(body: bytes, status: int) -> bytes:
    """A model server's error answer (OpenAI's shape, or anything) as a stream's event."""
    try:
        found = json.loads(body)
    except ValueError:
        found = None
    if not (isinstance(found, dict) and isinstance(found.get("error"), dict)):
        message = f"the model server answered {status}"
        found = openai_body(message, type=error_type(status), code="upstream_error")
    return f"data: {json.dumps(found)}\n\n".encode()
