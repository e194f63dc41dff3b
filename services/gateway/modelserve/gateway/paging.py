"""The query parameters of a list answered a page at a time: `limit` and `offset`, with
the total in the X-Total-Count header (GET /users, /teams, /auth/keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="Items skipped")]
TOTAL_HEADER = "X-Total-Count"


def set_total(response: Response, total: int) -> None:
    response.headers[TOTAL_HEADER] = str(total)
