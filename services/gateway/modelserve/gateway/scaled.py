"""A chat completion answered by an inference-time scaling algorithm.

The proxy hands over a request whose scaling is active (`scaling_requests`). This module
builds the language model and the reward for its target (`scaling`), runs the algorithm
in a task of its own, and answers in OpenAI's shape:

- not streamed: one chat.completion with the chosen answer, `usage` summed over every
  upstream call (generation and reward), and the algorithm's trace in `scaling` when asked;
- streamed: SSE at once, a keep-alive comment every `keepalive_seconds` while candidates
  are generated, then the chosen answer in chunks, its usage when asked, and `[DONE]`.

A client that goes away cancels the algorithm's task, and with it every upstream call in
flight. A request for an autoscaled model (or reward model) that does not serve yet is
held in that task first (`loading.holding`): a stream has its head and keep-alives
meanwhile, as while candidates are generated. From then until it ends, the request is
counted running on each server it uses (`LoadBook.running`): between its calls the
servers are not idle, and no drain completes under it (its later calls go on through a
drain, which that count calls off).

What the request costs is metered call by call (`CallMeter`, fed by `poster`): every
upstream call that completed counts, whatever becomes of the request afterwards (a client
that left, a failed reward, a model server's error on a later call), and that sum is what
is settled with the contract. The reservation asked for beforehand covers every
candidate: budget x max_tokens, or budget x `reserved_tokens` without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.types import Receive, Scope, Send

from modelserve.common.modelserve import Algorithm, RewardKind
from modelserve.common.tokens import Claims
from modelserve.gateway.accounting import Accounting, Decision
from modelserve.gateway.asgi import CLIENT_CLOSED, ExchangeResponse, client_gone, send_json
from modelserve.gateway.dispatch import Dispatcher
from modelserve.gateway.loading.holding import Holder
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.openai_errors import OpenAIError, openai_body
from modelserve.gateway.routing import NotReady, RouteTable, Target, Unknown
from modelserve.gateway.scaling import algorithms
from modelserve.gateway.scaling.lm import Prompt, Usage
from modelserve.gateway.scaling.openai_lm import MalformedAnswer, OpenAIChatLM, Post, call_usage
from modelserve.gateway.scaling.results import DEFAULT_OPTIONS, Options, Result
from modelserve.gateway.scaling.reward_model import ProcessRewardModel
from modelserve.gateway.scaling.rewards import LlmJudge, MeanLogprob, Reward, RewardError
from modelserve.gateway.scaling_requests import ScalingRequest
from modelserve.gateway.upstream import UpstreamError

logger = logging.getLogger(__name__)
# Fields the algorithms set themselves, or that make no sense for several candidates.
_NOT_SAMPLING = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "stop",
        "logprobs",
        "top_logprobs",
        # llama.cpp's own length, which it reads before max_tokens: the algorithms set it.
        "n_predict",
    }
)
# Pieces of the chosen answer in a stream (characters): small enough to look like one.
_PIECE = 32


class UpstreamStatus(UpstreamError):
    """A model server answered an error status to one of the algorithm's calls: its 4xx
    (a request it refuses, as the proxy passes them on) keeps its status; a 5xx is 502."""

    kind = "status"

    def __init__(self, status: int, body: bytes) -> None:
        detail = body[:300].decode(errors="replace")
        # A 5xx's body (a traceback, file paths) is for the log, never for the client.
        shown = f": {detail}" if status < 500 else ""
        super().__init__(f"the model server answered {status}{shown}", detail)
        self.status = status if status < 500 else 502


@dataclasses.dataclass
class CallMeter:
    """The usage of every upstream call of one scaled request that came back with an
    answer, as the model servers reported it."""

    used: Usage = dataclasses.field(default_factory=Usage)

    def count(self, answer: Mapping[str, Any]) -> None:
        self.used = self.used + call_usage(answer)


def poster(
    dispatcher: Dispatcher,
    target: Target,
    meter: CallMeter | None = None,
    *,
    running: bool = False,
) -> Post:
    """POST JSON to a path of `target`'s server (from its root: "/v1/…", "/pooling"),
    each call to the endpoint that the balancing policy chooses for it; each answer the
    server gave (a 2xx JSON object) counted in `meter`. `running`: the calls of a
    request counted running on the server (`Dispatcher.exchange`)."""
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        data_out = json.dumps(body).encode()
        status, data = await dispatcher.post(target, path, data_out, headers, running=running)
        if status >= 400:
            raise UpstreamStatus(status, data)
        try:
            found = json.loads(data)
        except ValueError as error:
            raise MalformedAnswer("the model server's answer is not JSON") from error
        if not isinstance(found, dict):
            raise MalformedAnswer("the model server's answer is not a JSON object")
        if meter is not None:
            meter.count(found)
        return found

    return post


def options(payload: Mapping[str, Any], scaling: ScalingRequest) -> Options:
    tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
    temperature = payload.get("temperature")
    stop = payload.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(s for s in stop or () if isinstance(s, str))
    return Options(
        max_tokens=tokens if isinstance(tokens, int) and tokens > 0 else None,
        temperature=float(temperature) if isinstance(temperature, int | float) else None,
        stop=stops,
        answer_pattern=scaling.answer_pattern,
        step_delimiter=scaling.step_delimiter,
    )


def usage_of(result: Result) -> dict[str, int]:
    """OpenAI's `usage`, summed over every upstream call: generation and reward."""
    used = result.generation + result.reward
    return {
        "prompt_tokens": used.prompt_tokens,
        "completion_tokens": used.completion_tokens,
        "total_tokens": used.total_tokens,
    }


def completion(
    model: str, result: Result, scaling: ScalingRequest, *, trace: bool
) -> dict[str, Any]:
    """The chat.completion of a finished algorithm."""
    answer: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.chosen.finish_reason or "stop",
            }
        ],
        "usage": usage_of(result),
    }
    if trace:
        answer["scaling"] = trace_of(result, scaling)
    return answer


def trace_of(result: Result, scaling: ScalingRequest) -> dict[str, Any]:
    return {
        "algorithm": result.algorithm.value,
        "budget": scaling.budget,
        "reward": None if result.algorithm is Algorithm.SELF_CONSISTENCY else scaling.reward.value,
        "selected": result.selected,
        "candidates": [
            {
                "index": index,
                "score": candidate.score,
                "answer": candidate.answer,
                "finish_reason": candidate.finish_reason,
                "steps": candidate.steps,
                "text": candidate.text,
            }
            for index, candidate in enumerate(result.candidates)
        ],
        "rounds": result.rounds,
        "upstream_calls": result.upstream_calls,
        "generation_seconds": round(result.generation_seconds, 4),
        "reward_seconds": round(result.reward_seconds, 4),
    }


def chunks(model: str, result: Result, *, usage: bool, trace: dict[str, Any] | None) -> list[bytes]:
    """The chosen answer as chat.completion.chunk events, then [DONE]."""
    base: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

    text = result.text
    events = [event([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}])]
    events += [
        event([{"index": 0, "delta": {"content": text[i : i + _PIECE]}, "finish_reason": None}])
        for i in range(0, len(text), _PIECE)
    ]
    last = {"index": 0, "delta": {}, "finish_reason": result.chosen.finish_reason or "stop"}
    events.append(event([last], **({"scaling": trace} if trace is not None else {})))
    if usage:
        events.append(event([], usage=usage_of(result)))
    return [*events, b"data: [DONE]\n\n"]


@dataclasses.dataclass
class ScaledExchange:
    target: Target
    claims: Claims
    payload: dict[str, Any]
    scaling: ScalingRequest
    decision: Decision | None
    started: float
    route: str  # the gateway's route, as metrics label it
    meter: CallMeter = dataclasses.field(default_factory=CallMeter)


class Scaler:
    """Runs scaled chat completions; made once, shared by every request."""

    def __init__(
        self,
        table: RouteTable,
        dispatcher: Dispatcher,
        metrics: GatewayMetrics,
        accounting: Accounting | None,
        *,
        max_concurrency: int,
        keepalive_seconds: float,
        reserved_tokens: int = 512,
        holder: Holder | None = None,
    ) -> None:
        self.table = table
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.accounting = accounting
        self.holder = holder
        self._concurrency = max_concurrency
        self._keepalive = keepalive_seconds
        self._reserved_tokens = reserved_tokens

    def reservation(self, max_tokens: int | None, scaling: ScalingRequest) -> int:
        """The tokens to hold for a scaled request: every candidate's."""
        stepwise = scaling.algorithm in (Algorithm.PARTICLE_FILTERING, Algorithm.BEAM_SEARCH)
        return reservation(max_tokens, scaling.budget, self._reserved_tokens, stepwise=stepwise)

    def response(self, exchange: ScaledExchange) -> ScaledResponse:
        return ScaledResponse(self, exchange)

    def _judge(self, exchange: ScaledExchange) -> Target | None:
        """The server of the reward model the request names, if it names one apart
        from the model itself (else None)."""
        scaling = exchange.scaling
        if scaling.algorithm is Algorithm.SELF_CONSISTENCY or scaling.reward is RewardKind.LOGPROB:
            return None
        if scaling.reward_model:
            return self._reward_target(scaling.reward_model)
        if scaling.reward is RewardKind.MODEL:
            raise OpenAIError(
                400,
                f"{scaling.algorithm.value} with reward 'model' needs the model's rewardModel",
                code="invalid_scaling",
            )
        return None

    def _reward(self, exchange: ScaledExchange, judge: Target) -> Reward | None:
        """The reward of the request's algorithm, scoring on `judge` (a reward model's
        server, or the model's own)."""
        scaling = exchange.scaling
        if scaling.algorithm is Algorithm.SELF_CONSISTENCY:
            return None
        if scaling.reward is RewardKind.LOGPROB:
            return MeanLogprob()
        post = poster(self.dispatcher, judge, exchange.meter, running=True)
        if scaling.reward is RewardKind.JUDGE:
            return LlmJudge(post, model=judge.served_name, max_concurrency=self._concurrency)
        return ProcessRewardModel(
            post,
            model=judge.served_name,
            aggregation=scaling.aggregation,
            step_delimiter=scaling.step_delimiter,
            max_concurrency=self._concurrency,
        )

    def _reward_target(self, name: str) -> Target:
        # Any server of it will do: the scaled model's owner chose it, not the caller.
        # One that sleeps is woken (held below), as the model itself is.
        found = self.table.find(name, hold=self.holder is not None)
        if isinstance(found, Unknown):
            raise OpenAIError(
                503, f"the reward model {name!r} is not served", code="reward_model_unavailable"
            )
        if isinstance(found, NotReady):
            raise OpenAIError(
                503,
                f"the reward model {name!r} is not ready: {found.message}",
                code="reward_model_unavailable",
                headers={"Retry-After": str(found.retry_after)},
            )
        return found

    @contextlib.asynccontextmanager
    async def _admitted(self, servers: list[Target]) -> AsyncIterator[list[Target]]:
        """`servers` once each serves (held until then), counted running on each for
        the whole run: no drain completes between two of its calls."""
        if self.holder is None:
            yield servers
            return
        async with self.holder.admitted(servers) as current:
            yield current

    async def run(self, exchange: ScaledExchange) -> Result:
        judge = self._judge(exchange)
        servers = [exchange.target]
        if judge is not None and judge.server_id != exchange.target.server_id:
            servers.append(judge)
        async with self._admitted(servers) as admitted:
            exchange.target = target = admitted[0]
            return await self._run(exchange, target, admitted[-1] if judge else target)

    async def _run(self, exchange: ScaledExchange, target: Target, judge: Target) -> Result:
        payload, scaling = exchange.payload, exchange.scaling
        lm = OpenAIChatLM.for_runtime(
            poster(self.dispatcher, target, exchange.meter, running=True),
            model=target.served_name,
            runtime=target.runtime,
            max_concurrency=self._concurrency,
            sampling={k: v for k, v in payload.items() if k not in _NOT_SAMPLING},
        )
        seed = payload.get("seed")
        return await algorithms.run(
            scaling.algorithm,
            lm,
            Prompt.of(payload["messages"]),
            budget=scaling.budget,
            reward=self._reward(exchange, judge),
            options=options(payload, scaling),
            rng=random.Random(seed) if isinstance(seed, int) else None,
        )

    def account(self, exchange: ScaledExchange, result: Result | None, status: int) -> None:
        """Metrics, and usage for the contract service (queued, never waited for): every
        upstream call that answered, whether or not the request got its answer."""
        metrics, model = self.metrics, exchange.target.served_name
        algorithm = exchange.scaling.algorithm.value
        elapsed = time.perf_counter() - exchange.started
        metrics.requests.labels(model, exchange.route, str(status)).inc()
        metrics.duration.labels(model, exchange.route).observe(elapsed)
        metrics.scaling_requests.labels(model, algorithm, str(status)).inc()
        metrics.scaling_budget.labels(algorithm).observe(exchange.scaling.budget)
        used = exchange.meter.used
        metrics.scaling_calls.labels(model, algorithm).inc(used.calls)
        metrics.record_tokens(
            exchange.claims.sub, model, used.prompt_tokens, used.completion_tokens
        )
        if result is not None:
            metrics.scaling_reward_seconds.labels(model, algorithm).observe(result.reward_seconds)
            added = max(0.0, elapsed - result.generation_seconds - result.reward_seconds)
            metrics.scaling_added_seconds.labels(model, algorithm).observe(added)
        if self.accounting is not None:
            self.accounting.settle(
                exchange.claims,
                model,
                exchange.decision,
                used.prompt_tokens,
                used.completion_tokens,
            )


def reservation(
    max_tokens: int | None, budget: int, per_candidate: int, *, stepwise: bool = False
) -> int:
    """Tokens held for `budget` candidates of `max_tokens` each. When the request names
    none: `per_candidate` each, or for a step-wise algorithm (particle filtering, beam
    search) what a path may grow to, its steps times their tokens."""
    if max_tokens is not None:
        each = max_tokens
    elif stepwise:
        each = DEFAULT_OPTIONS.max_steps * DEFAULT_OPTIONS.step_max_tokens
    else:
        each = per_candidate
    return budget * each


# What an algorithm may fail with, short of a bug.
FAILURES = (OpenAIError, UpstreamError, MalformedAnswer, RewardError)


def _error(error: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """What the client gets for a failure of the algorithm: status, body, headers."""
    if isinstance(error, OpenAIError):
        body = openai_body(error.message, type=error.type, code=error.code, param=error.param)
        return error.status_code, body, dict(error.headers or {})
    if isinstance(error, UpstreamError):
        body = openai_body(str(error), type="server_error", code=f"upstream_{error.kind}")
        return error.status, body, {}
    if isinstance(error, MalformedAnswer | RewardError):
        return 502, openai_body(str(error), type="server_error", code="scaling_failed"), {}
    # Not one the algorithms expect (a bug, or an answer read wrong): no detail leaves.
    message = f"the scaling algorithm failed ({type(error).__name__}); the gateway's log says why"
    return 502, openai_body(message, type="server_error", code="scaling_failed"), {}


class ScaledResponse(ExchangeResponse):
    """An ASGI response that runs the algorithm, minding the client's disconnect."""

    def __init__(self, scaler: Scaler, exchange: ScaledExchange) -> None:
        super().__init__()
        self._scaler = scaler
        self._exchange = exchange

    def abandon(self) -> None:
        """Never to be sent: its reservation comes back now (nothing was used)."""
        self._scaler.account(self._exchange, None, CLIENT_CLOSED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = self._exchange
        work = asyncio.create_task(self._scaler.run(exchange), name="scaling")
        gone = asyncio.create_task(client_gone(receive), name="scaling-client")
        status, result = CLIENT_CLOSED, None
        try:
            if exchange.payload.get("stream") is True:
                status, result = await self._stream(send, work, gone)
            else:
                status, result = await self._whole(send, work, gone)
        finally:
            for task in (work, gone):
                task.cancel()
            try:
                # Its outcome, if any, was read above; a cancelled one ends here.
                await asyncio.wait({work})
                if not work.cancelled():
                    work.exception()  # read, if the client left as it failed
            finally:
                # Whatever became of it: the calls that answered are counted.
                self._scaler.account(exchange, result, status)

    async def _whole(
        self, send: Send, work: asyncio.Task[Result], gone: asyncio.Task[None]
    ) -> tuple[int, Result | None]:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            return CLIENT_CLOSED, None  # the client left: `finally` cancels the algorithm
        try:
            result = work.result()
        except Exception as error:  # noqa: BLE001 - any failure is answered, and logged
            status, body, headers = _error(error)
            self._log(error)
            await send_json(send, status, body, headers)
            return status, None
        exchange = self._exchange
        answer = completion(
            exchange.target.served_name, result, exchange.scaling, trace=exchange.scaling.trace
        )
        await send_json(send, 200, answer)
        return 200, result

    async def _stream(
        self, send: Send, work: asyncio.Task[Result], gone: asyncio.Task[None]
    ) -> tuple[int, Result | None]:
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        keepalive = self._scaler._keepalive
        while not work.done():
            await asyncio.wait({work, gone}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED)
            if gone.done():
                return CLIENT_CLOSED, None
            if not work.done():
                # A comment line: clients ignore it; proxies see the connection alive.
                await _body(send, b": generating candidates\n\n")
        exchange = self._exchange
        try:
            result = work.result()
        except Exception as error:  # noqa: BLE001 - any failure is answered, and logged
            status, body, _ = _error(error)
            self._log(error)
            await _body(send, b"data: " + json.dumps(body).encode() + b"\n\n", more=False)
            return status, None
        options = exchange.payload.get("stream_options") or {}
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        trace = trace_of(result, exchange.scaling) if exchange.scaling.trace else None
        events = chunks(exchange.target.served_name, result, usage=usage, trace=trace)
        for event in events[:-1]:
            await _body(send, event)
        await _body(send, events[-1], more=False)
        return 200, result

    def _log(self, error: BaseException) -> None:
        model = self._exchange.target.served_name
        if not isinstance(error, FAILURES):  # a bug of ours, or an answer we misread
            logger.error("scaling for %s failed", model, exc_info=error)
            return
        detail = getattr(error, "detail", "")
        logger.warning("scaling for %s failed: %s %s", model, error, detail)


async def _body(send: Send, data: bytes, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})
