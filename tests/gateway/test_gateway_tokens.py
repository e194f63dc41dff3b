"""Tokens the gateway issues (POST /auth/token), and every kind of bad token it refuses."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from pydantic import SecretStr

from modelserve.common.tokens import DEVELOPMENT_SECRET, TokenSettings, TokenSigner, TokenVerifier

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.gateway.conftest import AccountsGateway

pytestmark = pytest.mark.postgres

OTHER_SECRET = "another-secret-that-is-also-32-bytes-long"


def _payload(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    payload = {
        "sub": "admin",
        "roles": ["admin"],
        "teams": [],
        "iss": "modelserve",
        "aud": "modelserve",
        "iat": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
    }
    return {key: value for key, value in {**payload, **overrides}.items() if value is not None}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(payload: dict[str, Any]) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."


def test_a_token_for_the_first_admin_verifies_everywhere(accounts_gateway: AccountsGateway) -> None:
    answer = httpx.post(
        f"{accounts_gateway.url}/auth/token",
        json={"username": "admin", "password": accounts_gateway.admin_password},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60

    # What every other service does with it: the shared verifier, the shared secret.
    settings = TokenSettings(secret=SecretStr(accounts_gateway.secret))
    claims = asyncio.run(TokenVerifier.from_settings(settings).verify(body["access_token"]))
    assert (claims.sub, claims.roles, claims.teams) == ("admin", ["admin"], [])
    assert (claims.iss, claims.aud) == ("modelserve", "modelserve")
    assert claims.exp - claims.iat == body["expires_in"]
    assert abs(claims.iat - time.time()) < 60

    me = httpx.get(
        f"{accounts_gateway.url}/auth/me",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "admin"
    assert me.json()["api_key"] is None


def test_the_oauth2_password_form_is_accepted(accounts_gateway: AccountsGateway) -> None:
    answer = httpx.post(
        f"{accounts_gateway.url}/auth/token",
        data={
            "grant_type": "password",
            "username": "admin",
            "password": accounts_gateway.admin_password,
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "bearer"


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(
    accounts_gateway: AccountsGateway,
) -> None:
    url = f"{accounts_gateway.url}/auth/token"
    wrong = httpx.post(url, json={"username": "admin", "password": "not-the-password"})
    unknown = httpx.post(url, json={"username": "nobody", "password": "not-the-password"})
    form = httpx.post(url, data={"username": "nobody", "password": "x"})
    for answer in (wrong, unknown, form):
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == unknown.json() == form.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"


BAD_SIGN_INS: dict[str, tuple[dict[str, str], bytes]] = {
    "malformed JSON": ({"content-type": "application/json"}, b'{"username": "admin",'),
    "no body": ({"content-type": "application/json"}, b""),
    "a list": ({"content-type": "application/json"}, b"[]"),
    "no password": ({"content-type": "application/json"}, b'{"username": "admin"}'),
    "a number for a name": (
        {"content-type": "application/json"},
        b'{"username": 7, "password": "x"}',
    ),
    "form without password": (
        {"content-type": "application/x-www-form-urlencoded"},
        b"username=admin",
    ),
    "other grant": (
        {"content-type": "application/x-www-form-urlencoded"},
        b"grant_type=client_credentials&username=admin&password=x",
    ),
    "form not UTF-8": ({"content-type": "application/x-www-form-urlencoded"}, b"username=\xff"),
    "NUL in the name": (
        {"content-type": "application/json"},
        b'{"username": "ad\\u0000min", "password": "x"}',
    ),
    "huge password": (
        {"content-type": "application/json"},
        json.dumps({"username": "admin", "password": "x" * 5000}).encode(),
    ),
}


@pytest.mark.parametrize("case", BAD_SIGN_INS)
def test_bad_sign_in_requests_are_422_json(accounts_gateway: AccountsGateway, case: str) -> None:
    headers, content = BAD_SIGN_INS[case]
    answer = httpx.post(f"{accounts_gateway.url}/auth/token", headers=headers, content=content)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"]


def _header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _signed(key: str | None, **overrides: Any) -> Callable[[str], dict[str, str]]:
    """Headers with a token signed with `key` (None: the gateway's own)."""
    return lambda secret: _header(jwt.encode(_payload(**overrides), key or secret, "HS256"))


def _fixed(headers: dict[str, str]) -> Callable[[str], dict[str, str]]:
    return lambda _: headers


NOW = int(time.time())
BAD_TOKENS: dict[str, tuple[Callable[[str], dict[str, str]], str]] = {
    "signed with another key": (_signed(OTHER_SECRET), "token_invalid"),
    "alg none": (_fixed(_header(_unsigned(_payload()))), "token_invalid"),
    "alg none, no dot": (_fixed(_header(_unsigned(_payload())[:-1])), "token_invalid"),
    "another audience": (_signed(None, aud="elsewhere"), "token_invalid"),
    "another issuer": (_signed(None, iss="someone-else"), "token_invalid"),
    "expired": (_signed(None, iat=NOW - 7200, exp=NOW - 3600), "token_expired"),
    "no expiry": (_signed(None, exp=None), "token_invalid"),
    "no subject": (_signed(None, sub=None), "token_invalid"),
    "roles not a list": (_signed(None, roles="admin"), "token_invalid"),
    "malformed": (_fixed(_header("not.a.jwt")), "token_invalid"),
    "garbage": (_fixed(_header("garbage")), "token_invalid"),
    "no header": (_fixed({}), "token_missing"),
    "bearer without a token": (_fixed({"Authorization": "Bearer"}), "token_missing"),
    "basic auth": (_fixed({"Authorization": "Basic YWRtaW46YWRtaW4="}), "token_missing"),
    "unknown API key": (_fixed(_header("msk_" + "a" * 12 + "_" + "b" * 43)), "token_invalid"),
    "malformed API key": (_fixed(_header("msk_short")), "token_invalid"),
}


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_bad_tokens_are_401_json(accounts_gateway: AccountsGateway, case: str) -> None:
    make, code = BAD_TOKENS[case]
    answer = httpx.get(f"{accounts_gateway.url}/auth/me", headers=make(accounts_gateway.secret))
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["message"]


def test_a_token_of_the_shared_signer_is_accepted(
    accounts_gateway: AccountsGateway, signer: TokenSigner
) -> None:
    """The control case of the above: a well-formed token of the right key passes."""
    answer = httpx.get(
        f"{accounts_gateway.url}/auth/me",
        headers=_header(signer.sign("someone", roles=["user"], teams=["nlp"])),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["teams"] == ["nlp"]


def _gateway_exits(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JWT_", "GATEWAY_", "MODELSERVE_"))
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "modelserve-gateway")],
        env={**environment, "GATEWAY_PORT": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "JWT_SECRET is the public development secret"),
        ({"JWT_SECRET": DEVELOPMENT_SECRET}, "JWT_SECRET is the public development secret"),
        ({"JWT_SECRET": "short-secret"}, "HS256 needs at least 32"),
        (
            {"JWT_SECRET": "short-secret", "MODELSERVE_DEVELOPMENT": "true"},
            "HS256 needs at least 32",
        ),
    ],
    ids=["unset", "development secret", "short secret", "short secret in development"],
)
def test_the_gateway_refuses_to_start_with_a_weak_secret(env: dict[str, str], message: str) -> None:
    finished = _gateway_exits(env)
    assert finished.returncode != 0
    assert message in finished.stderr
    assert "Traceback" not in finished.stderr  # the message, not a stack to read through
