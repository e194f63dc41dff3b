"""A peer service's error answer (`{"error": {"code", "message"}}`) as the gateway's
own, for the calls the gateway passes on as the caller: status, code, message and
Retry-After kept; an answer that is not one is the peer being unavailable (503)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from modelserve.common.errors import ApiError


def peer_refusal(response: httpx.Response, unavailable: Callable[[str], ApiError]) -> ApiError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return unavailable(f"answered {response.status_code}: {response.text[:200]}")
    retry = response.headers.get("retry-after")
    return ApiError(response.status_code, code, message, {"Retry-After": retry} if retry else None)
