"""A completion request with a list of prompts, for servers that take one prompt a request.

OpenAI's `/v1/completions` takes `prompt` as a list (strings, or arrays of token ids) and
answers one choice per prompt (`n` per prompt), `index` counting across the list:
prompt `i`'s choice `j` is `i * n + j`. vLLM does so itself. llama-cpp-python answers a
list of several prompts with a 500; llama-server takes the list but reports the usage of
one prompt only, ignores `echo`, and writes its logprobs in the chat shape. For those
(and for external servers, whatever they run) the proxy sends one request per prompt and
merges the answers here: the choices in the list's order with their `index`, the usage
summed, one `id`, `created` and `model` (the first answer's).

Pure functions over the payload and the answers; the exchange itself is in `fanout`.
"""

from __future__ import annotations

import json
from typing import Any

from modelserve.common.modelserve import Runtime
from modelserve.gateway.usage import Usage

# Runtimes whose servers take a list of prompts in one request, with OpenAI's answer.
LIST_RUNTIMES = frozenset({Runtime.VLLM})
_PER_PROMPT = frozenset({"choices", "usage", "timings"})


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    )


def prompts_of(payload: dict[str, Any]) -> list[Any] | None:
    """The prompts of a completion request that holds a list of them (strings, or arrays
    of token ids); None for one prompt (a string, or one array of token ids)."""
    prompt = payload.get("prompt")
    if not isinstance(prompt, list) or not prompt or _token_ids(prompt):
        return None
    return prompt


def prompt_count(payload: dict[str, Any]) -> int:
    """How many prompts the request holds (what its tokens are reserved for)."""
    found = prompts_of(payload)
    return len(found) if found is not None else 1


def fanned_out(runtime: Runtime, payload: dict[str, Any]) -> bool:
    """Whether the request goes to the server as one request per prompt."""
    found = prompts_of(payload)
    return found is not None and len(found) > 1 and runtime not in LIST_RUNTIMES


def split_bodies(payload: dict[str, Any]) -> list[bytes]:
    """One request body per prompt, the other fields as the client sent them."""
    found = prompts_of(payload) or [payload.get("prompt")]
    return [
        json.dumps({**payload, "prompt": prompt}, separators=(",", ":")).encode()
        for prompt in found
    ]


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def merge_answers(answers: list[dict[str, Any]], per_prompt: int) -> dict[str, Any]:
    """One completion answer from the answers to each prompt, in the list's order:
    prompt `i`'s choice `j` has `index` `i * per_prompt + j`; `usage` summed."""
    choices: list[dict[str, Any]] = []
    prompt_tokens = completion_tokens = 0
    for position, answer in enumerate(answers):
        own = [choice for choice in answer.get("choices") or [] if isinstance(choice, dict)]
        own.sort(key=lambda choice: _tokens(choice.get("index")))
        for offset, choice in enumerate(own):
            choices.append({**choice, "index": position * per_prompt + offset})
        usage = answer.get("usage")
        if isinstance(usage, dict):
            prompt_tokens += _tokens(usage.get("prompt_tokens"))
            completion_tokens += _tokens(usage.get("completion_tokens"))
    first = answers[0] if answers else {}
    # llama-server's `timings` are of one prompt: left out with the per-prompt usage.
    merged = {key: value for key, value in first.items() if key not in _PER_PROMPT}
    merged["choices"] = choices
    merged["usage"] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return merged


def merged_usage(merged: dict[str, Any]) -> Usage:
    usage = merged.get("usage") or {}
    return Usage(_tokens(usage.get("prompt_tokens")), _tokens(usage.get("completion_tokens")))
