"""Bearer tokens on FastAPI routes: `Caller` for any valid token (a JWT or an API key),
narrower ones on top.

A service puts its `TokenVerifier` in `app.state.verifier` at start-up. A token that
cannot be checked right now (no current revocation list, or the gateway cannot say what
an API key stands for) is refused with 503 and Retry-After, never let through.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from modelserve.common.errors import ApiError
from modelserve.common.tokens import (
    Claims,
    TokenCheckUnavailable,
    TokenError,
    TokenVerifier,
    bearer,
)


async def verified(verifier: TokenVerifier, authorization: str | None) -> Claims:
    """The claims of an Authorization header's token, or the ApiError to answer."""
    try:
        return await verifier.verify(bearer(authorization))
    except TokenError as error:
        raise ApiError(401, error.code, str(error), {"WWW-Authenticate": "Bearer"}) from error
    except TokenCheckUnavailable as error:
        raise ApiError(503, error.code, str(error), {"Retry-After": "1"}) from error


async def caller(request: Request) -> Claims:
    verifier: TokenVerifier = request.app.state.verifier
    return await verified(verifier, request.headers.get("authorization"))


async def admin(claims: Annotated[Claims, Depends(caller)]) -> Claims:
    if not claims.is_admin:
        raise ApiError(403, "admin_only", "this needs the admin role")
    return claims


async def service_or_admin(claims: Annotated[Claims, Depends(caller)]) -> Claims:
    if not (claims.is_service or claims.is_admin):
        raise ApiError(403, "service_only", "only platform services (or admins) may do this")
    return claims


Caller = Annotated[Claims, Depends(caller)]
Admin = Annotated[Claims, Depends(admin)]
ServiceOrAdmin = Annotated[Claims, Depends(service_or_admin)]
