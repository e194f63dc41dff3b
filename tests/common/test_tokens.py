"""Bearer tokens: settings checks, HS256 and RS256 round trips, refusals, key set fetching."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from pydantic import SecretStr, ValidationError

from modelserve.common.tokens import (
    ADMIN,
    DEVELOPMENT_SECRET,
    SERVICE,
    SERVICE_SECRET_KID,
    TokenError,
    TokenSettings,
    TokenSigner,
    TokenVerifier,
    bearer,
    jwk_thumbprint,
)

SECRET = "test-secret-0123456789abcdef0123456789"
JWKS_URL = "http://gateway.test/.well-known/jwks.json"


@pytest.fixture(autouse=True)
def _no_token_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from each test alone, never from the shell that runs pytest."""
    for name in list(os.environ):
        if name.startswith("JWT_") or name == "MODELSERVE_DEVELOPMENT":
            monkeypatch.delenv(name)


def hs256(**overrides: Any) -> TokenSettings:
    return TokenSettings(**{"secret": SecretStr(SECRET), **overrides})


def write_rsa_key(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    return path


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_rsa_key(tmp_path / "signing.pem")


@pytest.fixture
def rs256_signer(key_file: Path) -> TokenSigner:
    return TokenSigner.from_settings(TokenSettings(algorithm="RS256", private_key_file=key_file))


def verify(verifier: TokenVerifier, token: str) -> Any:
    return asyncio.run(verifier.verify(token))


def refusal(verifier: TokenVerifier, token: str) -> TokenError:
    with pytest.raises(TokenError) as caught:
        verify(verifier, token)
    assert not token or token not in caught.value.message
    return caught.value


# --- Settings -----------------------------------------------------------------------------


def test_the_development_secret_is_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="development secret"):
        TokenSettings()


@pytest.mark.parametrize("variable", ["MODELSERVE_DEVELOPMENT", "JWT_DEVELOPMENT"])
def test_the_development_secret_is_accepted_in_development(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "true")
    settings = TokenSettings()
    assert settings.development
    assert settings.secret.get_secret_value() == DEVELOPMENT_SECRET


def test_a_short_secret_is_refused_even_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_DEVELOPMENT", "true")
    monkeypatch.setenv("JWT_SECRET", "too-short")
    with pytest.raises(ValidationError, match="9 bytes long; HS256 needs at least 32"):
        TokenSettings()


def test_settings_are_read_from_the_jwt_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("JWT_ALGORITHM", "HS256")
    monkeypatch.setenv("JWT_EXPIRY_MINUTES", "2")
    monkeypatch.setenv("JWT_GATEWAY_URL", "http://gateway:8200")
    settings = TokenSettings()
    assert settings.secret.get_secret_value() == SECRET
    assert settings.expiry_seconds == 120
    assert settings.gateway_url == "http://gateway:8200"
    assert SECRET not in repr(settings)


def test_rs256_without_any_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="JWT_JWKS_URL or JWT_JWKS_FILE"):
        TokenSettings(algorithm="RS256")


def test_rs256_signing_needs_the_private_key(tmp_path: Path) -> None:
    settings = TokenSettings(algorithm="RS256", jwks_file=tmp_path / "jwks.json")
    with pytest.raises(ValueError, match="JWT_PRIVATE_KEY_FILE"):
        TokenSigner.from_settings(settings)


def test_a_jwks_url_needs_the_shared_http_client() -> None:
    settings = TokenSettings(algorithm="RS256", jwks_url=JWKS_URL)
    with pytest.raises(ValueError, match="shared httpx"):
        TokenVerifier.from_settings(settings)


# --- HS256 --------------------------------------------------------------------------------


def test_hs256_round_trip() -> None:
    settings = hs256()
    token = TokenSigner.from_settings(settings).sign("alice", roles=[ADMIN], teams=["nlp"])
    claims = verify(TokenVerifier.from_settings(settings), token)
    assert claims.sub == "alice"
    assert claims.roles == [ADMIN]
    assert claims.teams == ["nlp"]
    assert claims.is_admin
    assert not claims.is_service
    assert (claims.iss, claims.aud) == ("modelserve", "modelserve")
    assert claims.exp - claims.iat == 15 * 60  # short: revocation is for what lives longer
    assert len(claims.jti) == 32
    assert TokenSigner.from_settings(settings).public_jwks() == {"keys": []}


def test_service_token_claims() -> None:
    settings = hs256()
    token = TokenSigner.from_settings(settings).service_token("contract")
    claims = verify(TokenVerifier.from_settings(settings), token)
    assert claims.sub == "service:contract"
    assert claims.roles == [SERVICE]
    assert claims.is_service
    assert not claims.is_admin


def handmade(**changes: Any) -> str:
    """A token signed with SECRET whose claims are the usual ones with `changes` applied."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": "alice",
        "iss": "modelserve",
        "aud": "modelserve",
        "iat": now,
        "exp": now + 3600,
        "jti": "0" * 32,
    }
    payload.update(changes)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, SECRET, "HS256")


def test_an_expired_token_is_refused_as_expired() -> None:
    now = int(time.time())
    error = refusal(TokenVerifier.from_settings(hs256()), handmade(iat=now - 7200, exp=now - 60))
    assert error.code == "token_expired"


def test_a_token_just_past_expiry_is_within_the_leeway() -> None:
    now = int(time.time())
    claims = verify(TokenVerifier.from_settings(hs256()), handmade(exp=now - 10))
    assert claims.sub == "alice"


def other_signer(**overrides: Any) -> str:
    return TokenSigner.from_settings(hs256(**overrides)).sign("alice")


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: other_signer(secret="another-secret-0123456789abcdef012345"), "signature"),
        (lambda: other_signer(audience="billing"), "audience"),
        (lambda: other_signer(issuer="someone-else"), "issued by"),
        (lambda: "not.a.token", "malformed"),
        (lambda: "garbage", "malformed"),
        (lambda: handmade(jti=None), "'jti' claim"),
        (lambda: handmade(roles="admin"), "roles"),
        (lambda: jwt.encode({"sub": "alice"}, "", "none"), "not allowed"),
    ],
    ids=["secret", "audience", "issuer", "dots", "garbage", "no-jti", "roles", "alg-none"],
)
def test_a_bad_token_is_refused_as_invalid(make_token: Callable[[], str], reason: str) -> None:
    error = refusal(TokenVerifier.from_settings(hs256()), make_token())
    assert error.code == "token_invalid"
    assert reason in error.message


def test_an_empty_token_is_missing() -> None:
    assert refusal(TokenVerifier.from_settings(hs256()), "").code == "token_missing"


# --- bearer() -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer  abc ", "abc"), ("BEARER abc", "abc")],
)
def test_bearer_extracts_the_token(header: str, token: str) -> None:
    assert bearer(header) == token


@pytest.mark.parametrize("header", [None, "", "   ", "Bearer", "Bearer   ", "Basic YWxpY2U6cHc="])
def test_bearer_without_a_bearer_token_is_missing(header: str | None) -> None:
    with pytest.raises(TokenError) as caught:
        bearer(header)
    assert caught.value.code == "token_missing"


# --- RS256 --------------------------------------------------------------------------------


def test_the_kid_is_the_rfc_7638_thumbprint() -> None:
    # The example key of RFC 7638 section 3.1 and the thumbprint the RFC gives for it.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    key = RSAAlgorithm.from_jwk({"kty": "RSA", "n": n, "e": "AQAB"})
    assert isinstance(key, rsa.RSAPublicKey)
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rs256_tokens_name_the_published_key(rs256_signer: TokenSigner) -> None:
    token = rs256_signer.sign("alice")
    (published,) = rs256_signer.public_jwks()["keys"]
    assert jwt.get_unverified_header(token)["kid"] == published["kid"]
    assert set(published) == {"kty", "n", "e", "kid", "alg", "use"}


def test_rs256_verified_with_a_jwks_file(rs256_signer: TokenSigner, tmp_path: Path) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(rs256_signer.public_jwks()))
    verifier = TokenVerifier.from_settings(TokenSettings(algorithm="RS256", jwks_file=jwks_file))
    claims = verify(verifier, rs256_signer.sign("alice", roles=[ADMIN]))
    assert (claims.sub, claims.is_admin) == ("alice", True)


def test_rs256_verified_with_the_private_key_file(key_file: Path) -> None:
    settings = TokenSettings(algorithm="RS256", private_key_file=key_file)
    token = TokenSigner.from_settings(settings).service_token("gateway")
    assert verify(TokenVerifier.from_settings(settings), token).sub == "service:gateway"


def test_rs256_refuses_hs256_tokens(rs256_signer: TokenSigner, key_file: Path) -> None:
    verifier = TokenVerifier.from_settings(
        TokenSettings(algorithm="RS256", private_key_file=key_file)
    )
    (published,) = rs256_signer.public_jwks()["keys"]
    assert refusal(verifier, other_signer()).code == "token_invalid"  # no kid
    forged = jwt.encode({"sub": "mallory"}, SECRET, "HS256", headers={"kid": published["kid"]})
    assert "not allowed" in refusal(verifier, forged).message


SERVICE_SECRET = "a-service-secret-of-at-least-32-bytes-long"


def test_rs256_services_without_the_private_key_sign_with_the_service_secret(
    rs256_signer: TokenSigner, tmp_path: Path
) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(rs256_signer.public_jwks()))
    settings = TokenSettings(
        algorithm="RS256", jwks_file=jwks_file, service_secret=SecretStr(SERVICE_SECRET)
    )
    jobs = TokenSigner.from_settings(settings)
    token = jobs.service_token("jobs")
    assert jwt.get_unverified_header(token) == {
        "alg": "HS256",
        "kid": SERVICE_SECRET_KID,
        "typ": "JWT",
    }
    claims = verify(TokenVerifier.from_settings(settings), token)
    assert (claims.sub, claims.is_service) == ("service:jobs", True)
    # Users' tokens still need the gateway's private key, and still verify.
    with pytest.raises(ValueError, match="JWT_PRIVATE_KEY_FILE"):
        jobs.sign("alice")
    assert verify(TokenVerifier.from_settings(settings), rs256_signer.sign("alice")).sub == "alice"


def test_the_service_secret_signs_no_user_and_needs_a_verifier_that_has_it(
    key_file: Path,
) -> None:
    with_secret = TokenSettings(
        algorithm="RS256", private_key_file=key_file, service_secret=SecretStr(SERVICE_SECRET)
    )
    without = TokenSettings(algorithm="RS256", private_key_file=key_file)
    now = int(time.time())
    claims = {"iss": "modelserve", "aud": "modelserve", "iat": now, "exp": now + 60, "jti": "j"}
    header = {"kid": SERVICE_SECRET_KID}
    user = jwt.encode({**claims, "sub": "alice", "roles": [ADMIN]}, SERVICE_SECRET, "HS256", header)
    refused = refusal(TokenVerifier.from_settings(with_secret), user)
    assert "must be a service's" in refused.message
    dressed = jwt.encode(
        {**claims, "sub": "service:jobs", "roles": [SERVICE, ADMIN]},
        SERVICE_SECRET,
        "HS256",
        header,
    )
    assert (
        "must be a service's" in refusal(TokenVerifier.from_settings(with_secret), dressed).message
    )
    other = jwt.encode(
        {**claims, "sub": "service:operator", "roles": [SERVICE]}, SERVICE_SECRET, "HS256", header
    )  # only the jobs service signs with it
    assert "must be a service's" in refusal(TokenVerifier.from_settings(with_secret), other).message
    service = jwt.encode(
        {**claims, "sub": "service:jobs", "roles": [SERVICE]}, SERVICE_SECRET, "HS256", header
    )
    assert verify(TokenVerifier.from_settings(with_secret), service).sub == "service:jobs"
    # A verifier without the secret knows no such key.
    assert refusal(TokenVerifier.from_settings(without), service).code == "token_invalid"
    with pytest.raises(ValueError, match="JWT_SERVICE_SECRET"):
        TokenSettings(algorithm="RS256", private_key_file=key_file, service_secret=SecretStr("x"))


class KeySetServer:
    """The issuer's /.well-known/jwks.json, served to a mock transport that counts requests."""

    def __init__(self, *signers: TokenSigner, status: int = 200) -> None:
        self.signers = list(signers)
        self.status = status
        self.requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URL
        self.requests += 1
        keys = [key for signer in self.signers for key in signer.public_jwks()["keys"]]
        return httpx.Response(self.status, json={"keys": keys})

    def verifier(self, http: httpx.AsyncClient, refetch_interval: float) -> TokenVerifier:
        settings = TokenSettings(algorithm="RS256", jwks_url=JWKS_URL)
        return TokenVerifier.from_settings(settings, http, refetch_interval=refetch_interval)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))


@pytest.fixture
def second_signer(tmp_path: Path) -> TokenSigner:
    key_file = write_rsa_key(tmp_path / "second.pem")
    return TokenSigner.from_settings(TokenSettings(algorithm="RS256", private_key_file=key_file))


@pytest.fixture
def server(rs256_signer: TokenSigner) -> Iterator[KeySetServer]:
    yield KeySetServer(rs256_signer)


def test_rs256_verified_with_a_jwks_url_fetched_once(
    server: KeySetServer, rs256_signer: TokenSigner
) -> None:
    async def scenario() -> list[str]:
        async with server.client() as http:
            verifier = server.verifier(http, refetch_interval=30)
            return [(await verifier.verify(rs256_signer.sign(f"u{i}"))).sub for i in range(3)]

    assert asyncio.run(scenario()) == ["u0", "u1", "u2"]
    assert server.requests == 1


def test_unknown_kids_refetch_at_most_once_per_interval(
    server: KeySetServer, rs256_signer: TokenSigner, second_signer: TokenSigner
) -> None:
    async def scenario() -> list[TokenError]:
        async with server.client() as http:
            verifier = server.verifier(http, refetch_interval=30)
            await verifier.verify(rs256_signer.sign("alice"))
            tokens = [second_signer.sign(f"mallory{i}") for i in range(20)]
            results = await asyncio.gather(*map(verifier.verify, tokens), return_exceptions=True)
            return [error for error in results if isinstance(error, TokenError)]

    errors = asyncio.run(scenario())
    assert len(errors) == 20
    assert all(error.code == "token_invalid" and "key id" in error.message for error in errors)
    assert server.requests == 1  # the first use only: the unknown kids came within 30 s


def test_a_rotated_key_is_fetched_once_the_interval_has_passed(
    server: KeySetServer, rs256_signer: TokenSigner, second_signer: TokenSigner
) -> None:
    async def scenario() -> str:
        async with server.client() as http:
            verifier = server.verifier(http, refetch_interval=0)
            await verifier.verify(rs256_signer.sign("alice"))
            server.signers.append(second_signer)  # the issuer rotates its key
            claims = await verifier.verify(second_signer.sign("bob"))
            await verifier.verify(second_signer.sign("carol"))  # its kid is cached now
            return claims.sub

    assert asyncio.run(scenario()) == "bob"
    assert server.requests == 2


def test_concurrent_unknown_kids_share_one_fetch(
    server: KeySetServer, rs256_signer: TokenSigner
) -> None:
    async def scenario() -> list[str]:
        async with server.client() as http:
            verifier = server.verifier(http, refetch_interval=0)
            tokens = [rs256_signer.sign(f"u{i}") for i in range(10)]
            return [claims.sub for claims in await asyncio.gather(*map(verifier.verify, tokens))]

    assert asyncio.run(scenario()) == [f"u{i}" for i in range(10)]
    assert server.requests == 1


def test_a_failing_key_set_refuses_the_token_and_is_not_hammered(
    rs256_signer: TokenSigner,
) -> None:
    server = KeySetServer(rs256_signer, status=503)

    async def scenario() -> list[TokenError]:
        async with server.client() as http:
            verifier = server.verifier(http, refetch_interval=30)
            tokens = [rs256_signer.sign("alice") for _ in range(3)]
            results = await asyncio.gather(*map(verifier.verify, tokens), return_exceptions=True)
            return [error for error in results if isinstance(error, TokenError)]

    errors = asyncio.run(scenario())
    assert len(errors) == 3
    assert "could not be fetched" in errors[0].message
    assert server.requests == 1


def test_a_verified_token_is_remembered_only_until_it_expires() -> None:
    settings = hs256(leeway_seconds=0)
    signer, verifier = TokenSigner.from_settings(settings), TokenVerifier.from_settings(settings)
    token = signer.sign("alice", expires_in=1)
    first = verify(verifier, token)
    assert verify(verifier, token) is first  # the second time from memory, unchecked
    time.sleep(1.1)
    assert refusal(verifier, token).code == "token_expired"
