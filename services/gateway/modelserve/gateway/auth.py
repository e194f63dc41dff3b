"""Who is calling: a platform JWT or an API key (`msk_…`, looked up in the gateway's
database), both checked against the revocation list, both as `Claims`. Routes take
`Caller` or `Admin`; a pass-through to a peer service that judges the caller itself
takes `CallerAuthorization`, the header as the caller sent it.

The gateway's `TokenVerifier` (in `app.state.verifier`) is the one `Identity` made: its
API keys and revocations come from the gateway's own database.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from modelserve.common.auth import verified
from modelserve.common.errors import ApiError
from modelserve.common.tokens import API_KEY_PREFIX, Claims, TokenVerifier

__all__ = ["API_KEY_PREFIX", "Admin", "Caller", "CallerAuthorization", "authenticate"]


async def authenticate(request: Request, authorization: str | None) -> Claims:
    verifier: TokenVerifier = request.app.state.verifier
    return await verified(verifier, authorization)


async def caller(request: Request) -> Claims:
    return await authenticate(request, request.headers.get("authorization"))


async def admin(claims: Annotated[Claims, Depends(caller)]) -> Claims:
    if not claims.is_admin:
        raise ApiError(403, "admin_only", "this needs the admin role")
    return claims


Caller = Annotated[Claims, Depends(caller)]
Admin = Annotated[Claims, Depends(admin)]


def caller_authorization(request: Request) -> str:
    """The caller's Authorization header as they sent it (a JWT or an API key)."""
    return request.headers.get("authorization", "")


CallerAuthorization = Annotated[str, Depends(caller_authorization)]
