"""The language model as the algorithms see it: a prompt in, N samples out.

A `Prompt` is the chat so far plus, for the step-wise algorithms, the start of the
assistant's answer (`prefix`) that the model is to continue. How a server is asked to
continue it, and whether N samples take one request or N, is the implementation's
business (`openai_lm.OpenAIChatLM`); the algorithms only call `generate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

Message = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Prompt:
    """Chat messages (ending with the user's turn) and the assistant's answer so far."""

    messages: tuple[Message, ...]
    prefix: str = ""

    @classmethod
    def of(cls, messages: Iterable[Message]) -> Prompt:
        return cls(tuple(messages))

    def continued(self, prefix: str) -> Prompt:
        return dataclasses.replace(self, prefix=prefix)


@dataclasses.dataclass(frozen=True)
class Usage:
    """What upstream calls cost: how many, and their tokens as the servers counted them."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def total(usages: Iterable[Usage]) -> Usage:
    return sum(usages, Usage())


@dataclasses.dataclass(frozen=True)
class Generation:
    """One sample: the text generated after the prompt (and its prefix)."""

    text: str
    finish_reason: str | None = None
    # True: the model ended its answer itself (end-of-sequence). False: a stop sequence
    # or the token limit cut it. None: the server does not say which (llama.cpp reports
    # "stop" for both an end-of-sequence and a stop sequence).
    eos: bool | None = None
    # The stop sequence that ended it, where the server names it (vLLM's stop_reason).
    stop_sequence: str | None = None
    token_logprobs: tuple[float, ...] | None = None
    # Its own completion tokens, where known (from its log-probabilities, or the usage of
    # a request that had only this sample).
    completion_tokens: int | None = None


@dataclasses.dataclass(frozen=True)
class Generations:
    samples: tuple[Generation, ...]
    usage: Usage


class LanguageModel(Protocol):
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
        """`n` samples for `prompt`, in one request or several. Cancelling the caller
        cancels every request still in flight."""
        ...
