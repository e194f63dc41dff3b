"""`LanguageModel` over a model server's OpenAI-style API, through the gateway's client.

N samples: vLLM gives them in one request (`n`); llama.cpp does not (llama-server
refuses any `n` but 1, llama-cpp-python ignores it), so there they are N requests at
once, at most `max_concurrency` in flight.

Continuing a partial answer (the step-wise algorithms) depends on the server:

- vLLM: the chat plus an assistant message holding the prefix, with
  `continue_final_message: true, add_generation_prompt: false`.
- llama-server (the llama.cpp runtime): the same assistant message without the flags; it
  continues a trailing assistant message by default (since ggml-org/llama.cpp#13174,
  unless started with --no-prefill-assistant).
- A server that cannot (llama-cpp-python, OpenAI itself): `/v1/completions` with the
  chat rendered by a `template` the caller knows (e.g. `chatml`) and the prefix appended.
  Without one, the assistant message is sent all the same and such a server starts a new
  answer instead of continuing: the step-wise algorithms then still run, but their steps
  are not one answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from modelserve.common.modelserve import Runtime
from modelserve.gateway.scaling.concurrency import gather_all
from modelserve.gateway.scaling.lm import Generation, Generations, Message, Prompt, Usage, total
from modelserve.gateway.usage import reported_tokens

# POST `body` (JSON) to `path` on the model server, e.g. "/v1/chat/completions" or
# "/pooling" (from the server's root, not its /v1 base); the answer's JSON. Raises for
# anything but a 2xx answer.
Post = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
# Ours to set on every request: what a caller's sampling parameters may not override.
_OURS = frozenset(
    {"model", "messages", "prompt", "n", "stream", "stream_options", "logprobs", "top_logprobs"}
    | {"max_tokens", "max_completion_tokens", "stop", "temperature", "echo"}
    | {"continue_final_message", "add_generation_prompt", "n_predict", "post_sampling_probs"}
)


class MalformedAnswer(Exception):
    """A model server answered 2xx with a body that is not what its API promises."""


class Continuation(StrEnum):
    FINAL_MESSAGE = "continue_final_message"  # vLLM
    PREFILL = "prefill"  # llama-server: a trailing assistant message is continued
    TEMPLATE = "template"  # /v1/completions with the chat rendered by a known template


def chatml(messages: Sequence[Message], *, default_system: str | None = None) -> str:
    """The ChatML rendering (Qwen, SmolLM2, ...) of `messages`, ready for the answer."""
    turns = list(messages)
    if default_system is not None and (not turns or turns[0].get("role") != "system"):
        turns.insert(0, {"role": "system", "content": default_system})
    rendered = "".join(
        f"<|im_start|>{turn['role']}\n{message_text(turn)}<|im_end|>\n" for turn in turns
    )
    return rendered + "<|im_start|>assistant\n"


def message_text(message: Message) -> str:
    """A message's text: its content, or the text parts of a multi-part content."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


class OpenAIChatLM:
    def __init__(
        self,
        post: Post,
        *,
        model: str,
        supports_n: bool,
        max_concurrency: int = 8,
        continuation: Continuation = Continuation.FINAL_MESSAGE,
        template: Callable[[Sequence[Message]], str] | None = None,
        sampling: Mapping[str, Any] | None = None,
    ) -> None:
        """`sampling`: the client's other parameters (top_p, seed, ...), sent on every
        request; the ones the algorithms set themselves are left out."""
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if continuation is Continuation.TEMPLATE and template is None:
            raise ValueError("continuation by template needs a template")
        self.model = model
        self.supports_n = supports_n
        self.continuation = continuation
        self._post = post
        self._template = template
        self._sampling = {k: v for k, v in (sampling or {}).items() if k not in _OURS}
        self._slots = asyncio.Semaphore(max_concurrency)

    @classmethod
    def for_runtime(
        cls,
        post: Post,
        *,
        model: str,
        runtime: Runtime,
        max_concurrency: int = 8,
        sampling: Mapping[str, Any] | None = None,
    ) -> OpenAIChatLM:
        """What each ModelServe runtime supports; an external server is taken to be
        OpenAI-like: no `n` assumed, a trailing assistant message sent as it is."""
        vllm = runtime is Runtime.VLLM
        return cls(
            post,
            model=model,
            supports_n=vllm,
            max_concurrency=max_concurrency,
            continuation=Continuation.FINAL_MESSAGE if vllm else Continuation.PREFILL,
            sampling=sampling,
        )

    async def generate(
        self,
        prompt: Prompt,
        *,
        n: int,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        temperature: float | None = None,
        logprobs: bool = False,
    ) -> Generations:
        if n < 1:
            raise ValueError("n must be at least 1")
        body = self._body(prompt, max_tokens, stop, temperature, logprobs)
        if self.supports_n or n == 1:
            return await self._request(body, n, bool(stop))
        seed = body.get("seed")
        # N requests with one seed would give N equal samples.
        bodies = [{**body, "seed": seed + i} if isinstance(seed, int) else body for i in range(n)]
        parts = await gather_all(self._request(each, 1, bool(stop)) for each in bodies)
        return Generations(
            tuple(sample for part in parts for sample in part.samples),
            total(part.usage for part in parts),
        )

    def _rendered(self, prompt: Prompt) -> str | None:
        """The raw prompt for /v1/completions, when this prompt goes there."""
        if not prompt.prefix or self.continuation is not Continuation.TEMPLATE:
            return None
        if self._template is None:
            raise ValueError("continuation by template needs a template")
        return self._template(prompt.messages) + prompt.prefix

    def _body(
        self,
        prompt: Prompt,
        max_tokens: int | None,
        stop: Sequence[str],
        temperature: float | None,
        logprobs: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {**self._sampling, "model": self.model, "stream": False}
        rendered = self._rendered(prompt)
        if rendered is not None:
            body["prompt"] = rendered
            if logprobs:
                body["logprobs"] = 1
        else:
            messages = [dict(message) for message in prompt.messages]
            if prompt.prefix:
                messages.append({"role": "assistant", "content": prompt.prefix})
                if self.continuation is Continuation.FINAL_MESSAGE:
                    body["continue_final_message"] = True
                    body["add_generation_prompt"] = False
            body["messages"] = messages
            if logprobs:
                # llama-cpp-python returns none without top_logprobs.
                body["logprobs"] = True
                body["top_logprobs"] = 1
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stop:
            body["stop"] = list(stop)
        if temperature is not None:
            body["temperature"] = temperature
        return body

    async def _request(self, body: dict[str, Any], n: int, stopped_by_strings: bool) -> Generations:
        if n > 1:
            body = {**body, "n": n}
        path = COMPLETIONS_PATH if "prompt" in body else CHAT_PATH
        async with self._slots:
            answer = await self._post(path, body)
        parsed = parse_answer(answer, stopped_by_strings=stopped_by_strings)
        if len(parsed.samples) != n:
            raise MalformedAnswer(
                f"asked the model server for {n} samples and got {len(parsed.samples)}"
                " (does it support n?)"
            )
        return parsed


def parse_answer(answer: Mapping[str, Any], *, stopped_by_strings: bool) -> Generations:
    """The samples of a chat or text completion answer, in the order of their index."""
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedAnswer("the model server's answer has no choices")
    try:
        ordered = sorted(choices, key=lambda choice: int(choice.get("index", 0)))
        counted = call_usage(answer)
        samples = tuple(_sample(choice, stopped_by_strings) for choice in ordered)
    except (AttributeError, TypeError, ValueError) as error:
        raise MalformedAnswer(f"the model server's answer is malformed: {error}") from error
    if len(samples) == 1 and samples[0].completion_tokens is None and answer.get("usage"):
        samples = (dataclasses.replace(samples[0], completion_tokens=counted.completion_tokens),)
    return Generations(samples, counted)


def call_usage(answer: Mapping[str, Any]) -> Usage:
    """One upstream call, with the tokens its answer reports."""
    usage = answer.get("usage")
    if not isinstance(usage, Mapping):
        return Usage(1, 0, 0)
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return Usage(1, reported_tokens(prompt), reported_tokens(completion))


def _sample(choice: Mapping[str, Any], stopped_by_strings: bool) -> Generation:
    message = choice.get("message")
    text = message.get("content") if message is not None else choice.get("text")
    finish_reason = choice.get("finish_reason")
    stop_reason = choice.get("stop_reason")
    logprobs = _token_logprobs(choice.get("logprobs"))
    return Generation(
        text=text or "",
        finish_reason=finish_reason,
        eos=_ended_itself(choice, stopped_by_strings),
        stop_sequence=stop_reason if isinstance(stop_reason, str) else None,
        token_logprobs=logprobs,
        completion_tokens=None if logprobs is None else len(logprobs),
    )


def _ended_itself(choice: Mapping[str, Any], stopped_by_strings: bool) -> bool | None:
    reason = choice.get("finish_reason")
    if reason == "length":
        return False
    if reason != "stop":
        return None
    if not stopped_by_strings:
        return True
    if "stop_reason" in choice:
        # vLLM: the stop string that matched; None (or a stop token's id) at the end.
        return not isinstance(choice["stop_reason"], str)
    return None


def _token_logprob(token: Any) -> float:
    """A chat answer's token's log-probability: its `logprob`, or the log of llama.cpp's
    `prob` (`post_sampling_probs`); MalformedAnswer for neither."""
    if isinstance(token, Mapping):
        value = token.get("logprob")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        prob = token.get("prob")
        if isinstance(prob, int | float) and not isinstance(prob, bool) and prob > 0:
            return math.log(prob)
    raise MalformedAnswer("a token of the answer's logprobs has no logprob")


def _token_logprobs(logprobs: Any) -> tuple[float, ...] | None:
    if not isinstance(logprobs, Mapping):
        return None
    if isinstance(logprobs.get("content"), list):  # chat
        return tuple(_token_logprob(token) for token in logprobs["content"])
    if isinstance(logprobs.get("token_logprobs"), list):  # text completion
        return tuple(float(value) for value in logprobs["token_logprobs"] if value is not None)
    return None
