"""Forwarding an OpenAI request to a server of its model, and the answer back as it comes.

The route reads and checks the body (size, JSON, `model`, the fields the endpoint
needs), finds the target in the route table and, with a contract service, gets the
inference decided; then it returns a `ProxyResponse`, which does the exchange with the
model server while the gateway's server sends the answer:

- the body goes upstream as the client sent it (extra fields such as `logprobs`,
  `echo`, `top_k` pass through), except that a stream is asked for its usage;
- a stream is passed on chunk by chunk as it arrives; a whole answer is read first, so
  that a server failing half-way still gets a clean 502;
- a client that goes away cancels the exchange, which closes the upstream connection:
  the model server stops generating for nobody;
- failures of the model server become OpenAI-shaped 502 (unreachable, 5xx) or 504
  (timeout); its own 4xx answers (a prompt too long, ...) pass through unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any

from fastapi import Request, Response
from starlette.types import Receive, Scope, Send

from modelserve.common.tokens import Claims
from modelserve.gateway.accounting import Accounting, ContractUnavailable, Decision
from modelserve.gateway.asgi import ExchangeResponse, client_gone, send_json
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.openai_errors import OpenAIError, error_type, model_not_found, openai_body
from modelserve.gateway.routing import NotReady, RouteTable, Target, Unknown
from modelserve.gateway.scaled import ScaledExchange, Scaler
from modelserve.gateway.scaling_requests import FIELDS as SCALING_FIELDS
from modelserve.gateway.scaling_requests import scaling_request
from modelserve.gateway.upstream import UpstreamClient, UpstreamError, UpstreamResponse
from modelserve.gateway.usage import StreamMeter, Usage, inject_usage, usage_from_body

logger = logging.getLogger(__name__)
# A client that went away before its answer (nginx's convention; never sent to anyone).
CLIENT_CLOSED = 499
# Denials that a wait can lift answer 429 (OpenAI's RateLimitError); the others 403.
RATE_REASONS = frozenset({"request_rate_exceeded", "token_rate_exceeded", "token_budget_exhausted"})
# The request headers a model server gets from the client; never its Authorization.
_PASSED_HEADERS = ("accept", "x-request-id")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    route: str  # the gateway's route, as metrics label it
    path: str  # appended to the server's endpoint, which ends in /v1
    required: tuple[str, ...]  # fields besides `model`
    streams: bool = True


CHAT = Endpoint("/v1/chat/completions", "/chat/completions", ("messages",))
COMPLETIONS = Endpoint("/v1/completions", "/completions", ("prompt",))
EMBEDDINGS = Endpoint("/v1/embeddings", "/embeddings", ("input",), streams=False)


def invalid(
    message: str, *, param: str | None = None, code: str = "invalid_request"
) -> OpenAIError:
    return OpenAIError(400, message, code=code, param=param)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to be over `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise invalid("the Content-Length header is not a number")
        if int(declared) > limit:
            raise OpenAIError(413, f"the request body is over {limit} bytes", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise OpenAIError(413, f"the request body is over {limit} bytes", code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(body: bytes, endpoint: Endpoint) -> dict[str, Any]:
    """The request as a JSON object with the fields `endpoint` needs, or a 400."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise invalid("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise invalid("the request body must be a JSON object", code="invalid_json")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise invalid(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    for field in endpoint.required:
        if payload.get(field) is None:
            raise invalid(
                f"'{field}' is a required property", param=field, code="missing_required_parameter"
            )
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("'stream' must be true or false", param="stream")
    if stream and not endpoint.streams:
        raise invalid(f"{endpoint.route} does not stream", param="stream")
    return payload


def _compact(payload: dict[str, Any]) -> bytes:
    """A request the gateway changed, as JSON without spaces for its model server."""
    return json.dumps(payload, separators=(",", ":")).encode()


def _max_tokens(payload: dict[str, Any]) -> int | None:
    value = payload.get("max_completion_tokens", payload.get("max_tokens"))
    return value if isinstance(value, int) and value >= 0 else None


class Proxy:
    def __init__(
        self,
        table: RouteTable,
        upstream: UpstreamClient,
        metrics: GatewayMetrics,
        *,
        max_body_bytes: int,
        inject_stream_usage: bool,
        accounting: Accounting | None = None,
        scaler: Scaler | None = None,
    ) -> None:
        self.table = table
        self.upstream = upstream
        self.metrics = metrics
        self.accounting = accounting
        self.scaler = scaler
        self._max_body = max_body_bytes
        self._inject = inject_stream_usage

    async def forward(self, request: Request, claims: Claims, endpoint: Endpoint) -> Response:
        started = time.perf_counter()
        body = await read_body(request, self._max_body)
        payload = parse_body(body, endpoint)
        model: str = payload["model"]
        found = self.table.lookup(model, claims)
        if isinstance(found, Unknown):
            raise model_not_found(model)
        if isinstance(found, NotReady):
            raise OpenAIError(
                503,
                f"{found.message}; retry in {found.retry_after} s",
                code="model_not_ready",
                headers={"Retry-After": str(found.retry_after)},
                model=model,
            )
        if endpoint is CHAT:
            # Inference-time scaling: its fields are ours, never a model server's.
            ours = any(field in payload for field in SCALING_FIELDS)
            scaling = scaling_request(payload, request.headers, found.scaling)
            if ours:
                body = _compact(payload)
            if scaling.active and self.scaler is not None:
                decision = await self._decide(claims, model, payload, scaling.budget)
                return self.scaler.response(
                    ScaledExchange(found, claims, payload, scaling, decision, started)
                )
        decision = await self._decide(claims, model, payload, None)
        stream = payload.get("stream") is True
        strip_usage = False
        if stream and self._inject and inject_usage(payload):
            strip_usage = True
            body = _compact(payload)
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        for name in _PASSED_HEADERS:
            value = request.headers.get(name)
            if value is not None:
                headers[name] = value
        if found.api_key:
            headers["Authorization"] = f"Bearer {found.api_key}"
        return ProxyResponse(
            self,
            Exchange(
                target=found,
                endpoint=endpoint,
                claims=claims,
                body=body,
                headers=headers,
                stream=stream,
                strip_usage=strip_usage,
                decision=decision,
                started=started,
            ),
        )

    async def _decide(
        self, claims: Claims, model: str, payload: dict[str, Any], budget: int | None
    ) -> Decision | None:
        """The contract's word; a scaled request holds tokens for all its candidates."""
        if self.accounting is None:
            return None
        tokens = _max_tokens(payload)
        if tokens is not None and budget is not None:
            tokens *= budget
        try:
            decision = await self.accounting.decide(claims, model, tokens, budget)
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
    endpoint: Endpoint
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


class ProxyResponse(ExchangeResponse):
    """The answer of the model server, fetched while it is sent (an ASGI response)."""

    def __init__(self, proxy: Proxy, exchange: Exchange) -> None:
        super().__init__()
        self._proxy = proxy
        self._exchange = exchange

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        proxy, exchange = self._proxy, self._exchange
        target = exchange.target
        model, route = target.served_name, exchange.endpoint.route
        proxy.metrics.in_flight.labels(model).inc()
        proxy.table.acquire(target)
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
            proxy.table.release(target)
            proxy.metrics.in_flight.labels(model).dec()
            proxy.metrics.requests.labels(model, route, str(exchange.status)).inc()
            proxy.metrics.duration.labels(model, route).observe(
                time.perf_counter() - exchange.started
            )
            self._account()
        if self.background is not None:
            await self.background()

    async def _exchange_with(self, send: Send) -> None:
        proxy, exchange = self._proxy, self._exchange
        target = exchange.target
        url = target.endpoint + exchange.endpoint.path
        try:
            answer = await proxy.upstream.send(url, exchange.body, exchange.headers)
        except UpstreamError as error:
            await self._fail(send, error, "upstream_unreachable")
            return
        completed = False
        try:
            if answer.status >= 500 and answer.status not in (503, 504):
                completed = await self._fail_status(send, answer)
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
        headers = [*answer.headers, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True

    async def _relay_stream(self, send: Send, answer: UpstreamResponse) -> bool:
        """Chunks as they arrive; True when the server finished its answer."""
        proxy, exchange = self._proxy, self._exchange
        model, route = exchange.target.served_name, exchange.endpoint.route
        meter = StreamMeter(strip_usage=exchange.strip_usage)
        exchange.status = answer.status
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        first = True
        try:
            async for chunk in answer.chunks():
                if first:
                    first = False
                    elapsed = time.perf_counter() - exchange.started
                    proxy.metrics.first_token.labels(model, route).observe(elapsed)
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

    async def _fail_status(self, send: Send, answer: UpstreamResponse) -> bool:
        """A 5xx of the model server (other than 503/504, which pass with their hints),
        with what it said; True when its answer was read to the end."""
        try:
            text, read = (await answer.read())[:500].decode(errors="replace"), True
        except UpstreamError:
            text, read = "", False
        message = f"the model server answered {answer.status}"
        error = UpstreamError(f"{message}: {text}" if text else message)
        error.kind = "status"
        await self._fail(send, error, "upstream_error")
        return read

    async def _fail(self, send: Send, error: UpstreamError, code: str) -> None:
        self._report(error)
        self._exchange.status = error.status
        if error.status == 504:
            code = "upstream_timeout"
        body = openai_body(str(error), type=error_type(error.status), code=code)
        await send_json(send, error.status, body)

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
