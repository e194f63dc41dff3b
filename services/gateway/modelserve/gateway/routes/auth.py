"""Signing in (`POST /auth/token`), who am I, one's own API keys, and what the other
services ask the gateway about tokens: the key set (`/.well-known/jwks.json`), what an API
key stands for (`POST /auth/introspect`) and what is revoked (`GET /auth/revocations`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from modelserve.common.auth import verified
from modelserve.common.errors import ApiError
from modelserve.common.revocations import Revocations, RevocationsUnavailable
from modelserve.common.tokens import SERVICE, Claims
from modelserve.gateway.accounts import MAX_PASSWORD, ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from modelserve.gateway.auth import Caller
from modelserve.gateway.deps import IdentityDep, SettingsDep
from modelserve.gateway.paging import Limit, Offset, set_total

router = APIRouter(tags=["auth"])
_auth = APIRouter(prefix="/auth")

FORM = "application/x-www-form-urlencoded"
ModelT = TypeVar("ModelT", bound=BaseModel)


class Credentials(BaseModel):
    """JSON, or the form of OAuth 2's password grant (RFC 6749 section 4.3)."""

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    grant_type: Literal["password"] | None = None


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    """Seconds."""


class Introspected(Claims):
    """What a token stands for (RFC 7662's `active`, then the platform's claims)."""

    active: Literal[True] = True


class IntrospectionRequest(BaseModel):
    token: str = Field(max_length=4096)


class Me(BaseModel):
    username: str
    roles: list[str]
    teams: list[str]
    expires_at: dt.datetime
    api_key: str | None
    """The id of the API key the request came with, if it came with one."""


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"schema": model.model_json_schema()}


def _client_address(request: Request) -> str:
    """The peer, or (uvicorn's proxy headers, from FORWARDED_ALLOW_IPS) the client that a
    trusted proxy names in X-Forwarded-For."""
    return request.client.host if request.client else ""


async def _form_or_json(request: Request, model: type[ModelT]) -> ModelT:
    """Read by hand: FastAPI's forms need python-multipart, a dependency for two routes."""
    body = await request.body()
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        if media_type == FORM:
            fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
            return model.model_validate(fields)
        return model.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in errors]
        ) from None
    except UnicodeDecodeError:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "the form is not UTF-8", "type": "value_error"}]
        ) from None


async def _credentials(request: Request) -> Credentials:
    return await _form_or_json(request, Credentials)


@_auth.post(
    "/token",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": _schema(Credentials), FORM: _schema(Credentials)},
        }
    },
)
async def token(
    request: Request,
    credentials: Annotated[Credentials, Depends(_credentials)],
    identity: IdentityDep,
) -> Token:
    """429 `too_many_sign_ins` (Retry-After) past the per-user and per-address limits;
    503 `sign_in_busy` when too many sign-ins wait for their password check."""
    account = await identity.authenticate(
        credentials.username, credentials.password, _client_address(request)
    )
    if account is None:
        # One answer for an unknown user, a wrong password and a disabled account.
        raise ApiError(
            401,
            "invalid_credentials",
            "wrong username or password",
            {"WWW-Authenticate": "Bearer"},
        )
    access_token, lifetime = identity.issue_token(account)
    return Token(access_token=access_token, expires_in=lifetime)


@_auth.get("/me")
async def me(claims: Caller) -> Me:
    return Me(
        username=claims.sub,
        roles=claims.roles,
        teams=claims.teams,
        expires_at=dt.datetime.fromtimestamp(claims.exp, dt.UTC),
        api_key=claims.key_id,
    )


@_auth.post("/keys", status_code=201)
async def create_key(new: ApiKeyCreate, claims: Caller, identity: IdentityDep) -> ApiKeyCreated:
    """The key is in this answer and nowhere else: the gateway keeps only its hash. Only a
    signed-in session makes keys: a key (or a job's token acting for one) making another
    would outlive its own expiry and revocation."""
    if claims.key_id is not None:
        raise ApiError(
            403,
            "key_cannot_create_keys",
            "an API key cannot create API keys: sign in with a password (POST /auth/token)",
        )
    return await identity.create_key(claims.sub, new)


@_auth.get("/keys")
async def list_keys(
    claims: Caller,
    identity: IdentityDep,
    response: Response,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ApiKeyPublic]:
    """Your keys that are not revoked, oldest first, a page at a time (X-Total-Count)."""
    keys, total = await identity.keys(claims.sub, limit=limit, offset=offset)
    set_total(response, total)
    return keys


@_auth.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, claims: Caller, identity: IdentityDep) -> Response:
    """Your own keys; admins revoke anyone's."""
    await identity.revoke_key(key_id, None if claims.is_admin else claims.sub)
    return Response(status_code=204)


@_auth.post(
    "/introspect",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": _schema(IntrospectionRequest),
                FORM: _schema(IntrospectionRequest),
            },
        }
    },
)
async def introspect(request: Request, identity: IdentityDep) -> Introspected:
    """What a platform token (an API key or a JWT), given as `{"token"}` (JSON or form,
    as RFC 7662) or as the bearer, stands for now: 401 when it is unknown, expired or
    revoked. Knowing a token is all it takes: the answer says no more than `/auth/me`
    would say to its holder. The contract and download services check API keys here."""
    if await request.body():
        token = (await _form_or_json(request, IntrospectionRequest)).token
        authorization: str | None = f"Bearer {token}"
    else:
        authorization = request.headers.get("authorization")
    claims = await verified(identity.verifier, authorization)
    return Introspected(**claims.model_dump())


@_auth.get(
    "/revocations",
    response_model=Revocations,
    responses={304: {"description": "unchanged since If-None-Match"}},
)
async def revocations(request: Request, identity: IdentityDep) -> Any:
    """Users (as the SHA-256 of their name) whose tokens issued before a time are void,
    and revoked API key ids, as long as a token they void could still be unexpired. Read
    by every other service every JWT_REVOCATION_SECONDS; no token needed (it names no one
    in clear, and key ids are not secret)."""
    try:
        listed: Revocations = await identity.published_revocations()
    except RevocationsUnavailable as error:
        raise ApiError(503, "revocations_unavailable", str(error), {"Retry-After": "1"}) from None
    etag = f'"{listed.version}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(listed.model_dump(mode="json"), headers={"ETag": etag})


class DelegationRequest(BaseModel):
    sub: str = Field(min_length=1, max_length=256, description="the user the work is for")
    key_id: str | None = Field(
        default=None, max_length=64, description="the API key the work was queued with"
    )
    queued_at: int | None = Field(
        default=None,
        ge=0,
        le=1 << 40,
        description="when the work was queued (Unix seconds): refused when the user "
        "revoked their sessions after it",
    )


@_auth.post("/delegate")
async def delegate(
    body: DelegationRequest, claims: Caller, identity: IdentityDep, settings: SettingsDep
) -> Token:
    """The services of GATEWAY_DELEGATING_SERVICES only (the jobs service): a token for a
    user as they are now, with which that service runs the user's queued work, so that the
    gateway authorises and counts each item like the user's own request. 403
    `service_only` for anyone else; 403 `delegation_refused` for a disabled or unknown
    user, or a revoked or expired key."""
    service = claims.sub.removeprefix(f"{SERVICE}:")
    if not claims.is_service or service not in settings.delegating_service_names:
        raise ApiError(403, "service_only", "only the jobs service may ask for delegation")
    access_token, lifetime = await identity.delegate(body.sub, body.key_id, body.queued_at)
    return Token(access_token=access_token, expires_in=lifetime)


@router.get("/.well-known/jwks.json")
async def jwks(identity: IdentityDep) -> dict[str, list[dict[str, str]]]:
    """The public keys of the gateway's RS256 tokens (JWT_JWKS_URL of the other
    services); empty with HS256."""
    return identity.jwks()


router.include_router(_auth)
