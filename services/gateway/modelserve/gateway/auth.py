"""Who is calling: a platform JWT (verified with the shared key) or an API key (looked up
in the gateway's database), both as `Claims`. Routes take `Caller` or `Admin`.

API keys start with API_KEY_PREFIX, so a bearer token is one or the other without a
guess. The component that stores keys sits in `app.state.api_keys`.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, Request

from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims, TokenError, TokenVerifier, bearer

API_KEY_PREFIX = "msk_"


class ApiKeyResolver(Protocol):
    async def claims_for_key(self, key: str) -> Claims | None:
        """The claims of the key's user, or None for an unknown or revoked key."""
        ...


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, {"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request, authorization: str | None) -> Claims:
    try:
        token = bearer(authorization)
        if token.startswith(API_KEY_PREFIX):
            keys: ApiKeyResolver = request.app.state.api_keys
            claims = await keys.claims_for_key(token)
            if claims is None:
                raise _unauthorized("token_invalid", "unknown or revoked API key")
            return claims
        verifier: TokenVerifier = request.app.state.verifier
        return await verifier.verify(token)
    except TokenError as error:
        raise _unauthorized(error.code, str(error)) from error


async def caller(request: Request) -> Claims:
    return await authenticate(request, request.headers.get("authorization"))


async def admin(claims: Annotated[Claims, Depends(caller)]) -> Claims:
    if not claims.is_admin:
        raise ApiError(403, "admin_only", "this needs the admin role")
    return claims


Caller = Annotated[Claims, Depends(caller)]
Admin = Annotated[Claims, Depends(admin)]
