"""The bodies of the arena's requests."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelserve.gateway.arena.ratings import Outcome

# One message's text, and the messages of one request, at most (a model's context is
# smaller still: a side that cannot take the conversation voids the battle).
MAX_CONTENT = 100_000
MAX_MESSAGES = 100
# The characters of one side's whole conversation, over all its turns.
MAX_CONVERSATION = 200_000


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_CONTENT)

    @field_validator("content")
    @classmethod
    def _text(cls, content: str) -> str:
        # What no model server (nor PostgreSQL's JSON) takes: refused now, not after
        # both sides answered.
        if "\x00" in content:
            raise ValueError("a message may not hold a NUL character")
        try:
            content.encode()
        except UnicodeEncodeError as error:
            raise ValueError("a message must be valid Unicode text") from error
        return content


class _Answering(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(default=None, ge=1)
    """Tokens each side may answer with (at most GATEWAY_ARENA_MAX_TOKENS, the default)."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sent to both sides alike; their servers' default without."""
    stream: bool = True
    """Both answers as one event stream (default), or as one JSON answer at the end."""


class BattleRequest(_Answering):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    """The conversation so far, ending with the user's message."""
    models: list[str] | None = Field(default=None, min_length=2, max_length=2)
    """Two models to compare (then the battle is not anonymous and its vote does not
    count); without, two drawn at random among those the caller may use."""

    @model_validator(mode="after")
    def _check(self) -> BattleRequest:
        if self.messages[-1].role != "user":
            raise ValueError("the last message must be the user's")
        if self.models is not None and self.models[0] == self.models[1]:
            raise ValueError("`models` must name two different models")
        return self


class TurnRequest(_Answering):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    """The turn's new messages (both sides get them after their own answers so far),
    ending with the user's."""

    @model_validator(mode="after")
    def _check(self) -> TurnRequest:
        if self.messages[-1].role != "user":
            raise ValueError("the last message must be the user's")
        return self


class VoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vote: Outcome
    """a or b: that side is better; tie; both_bad: a tie in which neither is good."""
