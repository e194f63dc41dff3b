"""Bearer tokens: one settings object, a signer for the issuing service, a verifier for the rest.

Every service reads the same JWT_* variables so that a token the gateway issues is accepted
everywhere. HS256 shares one secret; RS256 lets only the issuer hold the private key while the
others check signatures against the published key set (the gateway's /.well-known/jwks.json).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Self

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ADMIN = "admin"
SERVICE = "service"

# Public, so that no deployment can run on it unnoticed: refused unless MODELSERVE_DEVELOPMENT.
DEVELOPMENT_SECRET = "modelserve-development-secret-never-use-outside-development"
# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
# A token naming an unknown kid may mean the issuer rotated its key; refetching the key set for
# every such token would let a flood of forged kids hammer the issuer.
JWKS_REFETCH_INTERVAL = 30.0
VERIFIED_TOKENS_KEPT = 10_000
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti"]

TokenErrorCode = Literal["token_missing", "token_expired", "token_invalid"]


class TokenSettings(BaseSettings):
    """How tokens are signed and checked; the same JWT_* variables in every service."""

    model_config = SettingsConfigDict(env_prefix="JWT_", populate_by_name=True)

    algorithm: Literal["HS256", "RS256"] = "HS256"
    secret: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    """The HS256 key, shared by every service. Unused with RS256."""
    development: bool = Field(
        default=False, validation_alias=AliasChoices("MODELSERVE_DEVELOPMENT", "JWT_DEVELOPMENT")
    )
    """Allows DEVELOPMENT_SECRET; never set in a deployment."""
    issuer: str = "modelserve"
    audience: str = "modelserve"
    expiry_hours: float = Field(default=24, gt=0)
    leeway_seconds: int = Field(default=30, ge=0)
    """Clock skew tolerated between the issuer and the verifying service."""
    private_key_file: Path | None = None
    """RS256: the PEM private key; only the issuing service has it."""
    jwks_url: str | None = None
    """RS256: where the issuer publishes its key set, fetched on first use and on key rotation."""
    jwks_file: Path | None = None
    """RS256: a key set on disk, for services that cannot or need not reach the issuer."""

    @model_validator(mode="after")
    def _check_keys(self) -> Self:
        if self.algorithm == "HS256":
            length = len(self.secret.get_secret_value().encode())
            if length < MIN_SECRET_BYTES:
                raise ValueError(
                    f"JWT_SECRET is {length} bytes long; HS256 needs at least {MIN_SECRET_BYTES}"
                )
            if self.secret.get_secret_value() == DEVELOPMENT_SECRET and not self.development:
                raise ValueError(
                    "JWT_SECRET is the public development secret; set it to a random value "
                    f"of at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`), "
                    "or set MODELSERVE_DEVELOPMENT=true on a development machine"
                )
        elif not (self.private_key_file or self.jwks_url or self.jwks_file):
            raise ValueError(
                "JWT_ALGORITHM=RS256 needs a key: JWT_JWKS_URL or JWT_JWKS_FILE to verify "
                "tokens, JWT_PRIVATE_KEY_FILE (issuing service only) to sign them"
            )
        return self


class Claims(BaseModel):
    """What a verified token says about its bearer."""

    sub: str
    """The principal: a user name, or `service:<name>` for a service token."""
    roles: list[str] = []
    teams: list[str] = []
    iss: str
    aud: str
    exp: int
    iat: int
    jti: str

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def is_service(self) -> bool:
        return SERVICE in self.roles


class TokenError(Exception):
    """A request's token was refused; `code` is stable for clients, the message is for humans.

    The message says what was wrong and never quotes the token, so it is safe to log and return.
    """

    def __init__(self, code: TokenErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: TokenErrorCode = code
        self.message = message


def bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header value."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if not scheme:
        raise TokenError("token_missing", "no Authorization header")
    # RFC 9110 section 11.1: the scheme is case-insensitive.
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("token_missing", "the Authorization header is not 'Bearer <token>'")
    return token.strip()


def jwk_thumbprint(public_key: RSAPublicKey) -> str:
    """The RFC 7638 thumbprint of a key: a kid that every party derives alike from the key."""
    jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def _load_private_key(path: Path) -> RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key, which RS256 needs")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"{path} holds a {key.key_size}-bit key; RS256 needs {MIN_RSA_BITS}")
    return key


def _public_keys(jwks: object) -> dict[str, RSAPublicKey]:
    """The RS256 keys of a JWK set by kid; other keys are skipped (RFC 7517 section 5)."""
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWK set: no 'keys' list")
    keys: dict[str, RSAPublicKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        kid, n, e = entry.get("kid"), entry.get("n"), entry.get("e")
        if not (isinstance(kid, str) and isinstance(n, str) and isinstance(e, str)):
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
            continue
        try:
            key = RSAAlgorithm.from_jwk({"kty": "RSA", "n": n, "e": e})
        except (jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if isinstance(key, RSAPublicKey):
            keys[kid] = key
    return keys


class TokenSigner:
    """Issues tokens; only the service that authenticates principals (the gateway) has one."""

    def __init__(self, settings: TokenSettings, *, private_key: RSAPrivateKey | None = None):
        if settings.algorithm == "RS256" and private_key is None:
            raise ValueError("signing with RS256 needs JWT_PRIVATE_KEY_FILE, a PEM RSA private key")
        self._settings = settings
        self._private_key = private_key if settings.algorithm == "RS256" else None
        self._kid = jwk_thumbprint(self._private_key.public_key()) if self._private_key else None

    @classmethod
    def from_settings(cls, settings: TokenSettings) -> TokenSigner:
        private_key = (
            _load_private_key(settings.private_key_file)
            if settings.algorithm == "RS256" and settings.private_key_file
            else None
        )
        return cls(settings, private_key=private_key)

    def sign(
        self,
        subject: str,
        *,
        roles: Iterable[str] = (),
        teams: Iterable[str] = (),
        expires_in: float | None = None,
    ) -> str:
        """A token for `subject`, valid for `expires_in` seconds (JWT_EXPIRY_HOURS by default)."""
        lifetime = self._settings.expiry_hours * 3600 if expires_in is None else expires_in
        if lifetime <= 0:
            raise ValueError(f"a token must live a positive time, not {lifetime} s")
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": subject,
            "roles": list(roles),
            "teams": list(teams),
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "iat": now,
            "exp": now + int(lifetime),
            "jti": uuid.uuid4().hex,
        }
        if self._private_key is None:
            return jwt.encode(payload, self._settings.secret.get_secret_value(), "HS256")
        return jwt.encode(payload, self._private_key, "RS256", headers={"kid": self._kid})

    def service_token(self, name: str) -> str:
        """A token with which service `name` calls the others."""
        if not name:
            raise ValueError("a service token needs the service's name")
        return self.sign(f"{SERVICE}:{name}", roles=[SERVICE])

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The key set to publish at /.well-known/jwks.json; empty with HS256."""
        if self._private_key is None or self._kid is None:
            return {"keys": []}
        jwk = RSAAlgorithm.to_jwk(self._private_key.public_key(), as_dict=True)
        key = {"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}
        return {"keys": [{**key, "kid": self._kid, "alg": "RS256", "use": "sig"}]}


class TokenVerifier:
    """Checks tokens: signature, expiry, issuer and audience, then parses the claims.

    With HS256 verification is pure CPU. With RS256 the keys come from the private key file
    and the key set file, read once, and from JWT_JWKS_URL, fetched with the service's shared
    HTTP client on first use and again when a token names an unknown kid, at most once per
    `refetch_interval` seconds.
    """

    def __init__(
        self,
        settings: TokenSettings,
        *,
        keys: Mapping[str, RSAPublicKey] | None = None,
        http: httpx.AsyncClient | None = None,
        refetch_interval: float = JWKS_REFETCH_INTERVAL,
    ) -> None:
        rs256 = settings.algorithm == "RS256"
        if rs256 and settings.jwks_url and http is None:
            raise ValueError("JWT_JWKS_URL needs the service's shared httpx.AsyncClient")
        if rs256 and not keys and not settings.jwks_url:
            raise ValueError("RS256 verification has no key: set JWT_JWKS_URL or JWT_JWKS_FILE")
        self._settings = settings
        self._static_keys = dict(keys or {})
        self._fetched_keys: dict[str, RSAPublicKey] = {}
        self._jwks_url = settings.jwks_url if rs256 else None
        self._http = http
        self._refetch_interval = refetch_interval
        self._fetched_at: float | None = None
        self._fetch_lock = asyncio.Lock()
        # Tokens already verified, until they expire: a client sends the same token with
        # every request, and checking its signature again each time is most of the cost.
        self._verified: dict[str, Claims] = {}

    @classmethod
    def from_settings(
        cls,
        settings: TokenSettings,
        http: httpx.AsyncClient | None = None,
        *,
        refetch_interval: float = JWKS_REFETCH_INTERVAL,
    ) -> TokenVerifier:
        keys: dict[str, RSAPublicKey] = {}
        if settings.algorithm == "RS256":
            if settings.private_key_file:
                public_key = _load_private_key(settings.private_key_file).public_key()
                keys[jwk_thumbprint(public_key)] = public_key
            if settings.jwks_file:
                file_keys = _public_keys(json.loads(settings.jwks_file.read_text()))
                if not file_keys:
                    raise ValueError(f"{settings.jwks_file} holds no RS256 key with a kid")
                keys.update(file_keys)
        return cls(settings, keys=keys, http=http, refetch_interval=refetch_interval)

    async def verify(self, token: str) -> Claims:
        """The claims of `token`, or TokenError saying why it is refused."""
        if not token:
            raise TokenError("token_missing", "no token")
        known = self._verified.get(token)
        if known is not None and known.exp > time.time():
            return known
        claims = await self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.pop(next(iter(self._verified)))  # the oldest goes
        self._verified[token] = claims
        return claims

    async def _verify(self, token: str) -> Claims:
        key: RSAPublicKey | str
        if self._settings.algorithm == "HS256":
            key = self._settings.secret.get_secret_value()
        else:
            key = await self._key(_kid(token))
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[self._settings.algorithm],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired", "token has expired") from None
        except jwt.InvalidSignatureError:
            raise TokenError("token_invalid", "token signature does not verify") from None
        except jwt.InvalidAudienceError:
            message = f"token is not meant for audience {self._settings.audience!r}"
            raise TokenError("token_invalid", message) from None
        except jwt.InvalidIssuerError:
            message = f"token was not issued by {self._settings.issuer!r}"
            raise TokenError("token_invalid", message) from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenError("token_invalid", f"token lacks the {error.claim!r} claim") from None
        except jwt.DecodeError:
            raise TokenError("token_invalid", "token is malformed") from None
        except jwt.PyJWTError as error:
            # PyJWT's own messages name the claim at fault, never the token.
            raise TokenError("token_invalid", f"token is invalid: {error}") from None
        try:
            return Claims.model_validate(payload)
        except ValidationError as error:
            fields = ", ".join(str(e["loc"][0]) for e in error.errors() if e["loc"])
            raise TokenError("token_invalid", f"token has malformed claims: {fields}") from None

    async def _key(self, kid: str) -> RSAPublicKey:
        key = self._static_keys.get(kid) or self._fetched_keys.get(kid)
        if key is None and self._jwks_url is not None and self._http is not None:
            async with self._fetch_lock:
                # Tasks that waited on the lock find the key another one has just fetched.
                key = self._fetched_keys.get(kid)
                if key is None and self._may_fetch():
                    await self._fetch(self._http, self._jwks_url)
                    key = self._fetched_keys.get(kid)
        if key is None:
            raise TokenError("token_invalid", f"token names an unknown key id {kid[:64]!r}")
        return key

    def _may_fetch(self) -> bool:
        now = time.monotonic()
        return self._fetched_at is None or now - self._fetched_at >= self._refetch_interval

    async def _fetch(self, http: httpx.AsyncClient, url: str) -> None:
        # Stamped before the request, so that a failing issuer is not retried on every token.
        self._fetched_at = time.monotonic()
        try:
            response = await http.get(url)
            response.raise_for_status()
            self._fetched_keys = _public_keys(response.json())
        except (httpx.HTTPError, ValueError) as error:
            message = f"the key set at {url} could not be fetched: {error}"
            raise TokenError("token_invalid", message) from None


def _kid(token: str) -> str:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError:
        raise TokenError("token_invalid", "token is malformed") from None
    if not isinstance(kid, str) or not kid:
        raise TokenError("token_invalid", "token has no key id (kid) header")
    return kid
