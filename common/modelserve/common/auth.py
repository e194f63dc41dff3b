"""Bearer tokens on FastAPI routes: `Caller` for any valid token, narrower ones on top.

A service puts its `TokenVerifier` in `app.state.verifier` at start-up.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims, TokenError, TokenVerifier, bearer


async def caller(request: Request) -> Claims:
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return await verifier.verify(bearer(request.headers.get("authorization")))
    except TokenError as error:
        raise ApiError(401, error.code, str(error), {"WWW-Authenticate": "Bearer"}) from error


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
