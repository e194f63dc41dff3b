"""OpenAI's Responses API (`POST /v1/responses`) over the chat completions every runtime
serves: a Responses request becomes a chat completion (`requests`), which goes through
the proxy as a chat completion does (routing, the contract, usage, metrics, scaling),
and its answer becomes a Response (`answers`), or its stream Responses' typed events
(`events`). `translated` is the ASGI response that does the second half on the way out.
"""

from __future__ import annotations
