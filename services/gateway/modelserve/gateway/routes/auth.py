"""Signing in (`POST /auth/token`), who am I, and one's own API keys."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from modelserve.common.errors import ApiError
from modelserve.gateway.accounts import MAX_PASSWORD, ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from modelserve.gateway.apikeys import KEY_JTI_PREFIX
from modelserve.gateway.auth import Caller
from modelserve.gateway.deps import IdentityDep

router = APIRouter(prefix="/auth", tags=["auth"])

FORM = "application/x-www-form-urlencoded"


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


class Me(BaseModel):
    username: str
    roles: list[str]
    teams: list[str]
    expires_at: dt.datetime
    api_key: str | None
    """The id of the API key the request came with, if it came with one."""


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"schema": model.model_json_schema()}


async def _credentials(request: Request) -> Credentials:
    """Read by hand: FastAPI's forms need python-multipart, a dependency for one route."""
    body = await request.body()
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        if media_type == FORM:
            fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
            return Credentials.model_validate(fields)
        return Credentials.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in errors]
        ) from None
    except UnicodeDecodeError:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "the form is not UTF-8", "type": "value_error"}]
        ) from None


@router.post(
    "/token",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": _schema(Credentials), FORM: _schema(Credentials)},
        }
    },
)
async def token(
    credentials: Annotated[Credentials, Depends(_credentials)], identity: IdentityDep
) -> Token:
    account = await identity.authenticate(credentials.username, credentials.password)
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


@router.get("/me")
async def me(claims: Caller) -> Me:
    return Me(
        username=claims.sub,
        roles=claims.roles,
        teams=claims.teams,
        expires_at=dt.datetime.fromtimestamp(claims.exp, dt.UTC),
        api_key=claims.jti.removeprefix(KEY_JTI_PREFIX)
        if claims.jti.startswith(KEY_JTI_PREFIX)
        else None,
    )


@router.post("/keys", status_code=201)
async def create_key(new: ApiKeyCreate, claims: Caller, identity: IdentityDep) -> ApiKeyCreated:
    """The key is in this answer and nowhere else: the gateway keeps only its hash."""
    return await identity.create_key(claims.sub, new)


@router.get("/keys")
async def list_keys(claims: Caller, identity: IdentityDep) -> list[ApiKeyPublic]:
    return await identity.keys(claims.sub)


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, claims: Caller, identity: IdentityDep) -> Response:
    """Your own keys; admins revoke anyone's."""
    await identity.revoke_key(key_id, None if claims.is_admin else claims.sub)
    return Response(status_code=204)
