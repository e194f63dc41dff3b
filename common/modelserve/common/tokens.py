"""Bearer tokens: one settings object, a signer for the issuing service, a verifier for the rest.

Every service reads the same JWT_* variables so that a token the gateway issues is accepted
everywhere. HS256 shares one secret; RS256 lets only the issuer hold the private key while the
others check signatures against the published key set (the gateway's /.well-known/jwks.json).

A platform token is a JWT or an API key (`msk_…`). The gateway resolves keys in its database;
the other services ask it (`POST /auth/introspect`) when JWT_GATEWAY_URL is set, and read its
revocation list (`GET /auth/revocations`), so that a disabled user, a demoted admin or a
revoked key is refused everywhere within JWT_REVOCATION_SECONDS.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Self

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelserve.common.revocations import (
    RevocationList,
    Revocations,
    RevocationSource,
    RevocationsUnavailable,
    http_source,
)

ADMIN = "admin"
SERVICE = "service"
# API keys start with this, so a bearer token is a key or a JWT without a guess.
API_KEY_PREFIX = "msk_"
# The `jti` of the claims a key stands for: `key:<key id>`.
KEY_JTI_PREFIX = "key:"

# Public, so that no deployment can run on it unnoticed: refused unless MODELSERVE_DEVELOPMENT.
DEVELOPMENT_SECRET = "modelserve-development-secret-never-use-outside-development"
# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
# The key id of service tokens signed with JWT_SERVICE_SECRET under RS256.
SERVICE_SECRET_KID = "service-secret"
# The only services that sign with it: those that need a token of their own under RS256.
SERVICE_SECRET_SUBJECTS = frozenset({f"{SERVICE}:jobs"})
# A token naming an unknown kid may mean the issuer rotated its key; refetching the key set for
# every such token would let a flood of forged kids hammer the issuer.
JWKS_REFETCH_INTERVAL = 30.0
VERIFIED_TOKENS_KEPT = 10_000
API_KEYS_KEPT = 10_000
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti"]

TokenErrorCode = Literal["token_missing", "token_expired", "token_invalid", "token_revoked"]


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
    expiry_minutes: float = Field(default=15, gt=0)
    """How long a token from POST /auth/token (and the claims of an API key) live; sign in
    again (or use an API key) after that. Revocation lists cover at least this long."""
    leeway_seconds: int = Field(default=30, ge=0)
    """Clock skew tolerated between the issuer and the verifying service."""
    gateway_url: str | None = None
    """The gateway's base URL, in every service but the gateway: API keys are checked at
    {url}/auth/introspect and revocations read from {url}/auth/revocations. Unset: this
    service refuses API keys and honours no revocation before a token expires."""
    revocation_seconds: float = Field(default=2.0, gt=0)
    """The revocation list is asked for again at most this often (on the next token)."""
    revocation_max_stale_seconds: float = Field(default=30.0, gt=0)
    """Without a fresh revocation list for this long (the gateway cannot be reached),
    tokens are refused with 503 `token_check_unavailable` rather than trusted."""
    api_key_cache_seconds: float = Field(default=5.0, ge=0)
    """What a key stands for is remembered this long (and checked against the revocation
    list on every use)."""
    api_key_negative_cache_seconds: float = Field(default=10.0, ge=0)
    """A key found unknown, revoked or of a disabled user is refused without asking again
    for this long (a re-enabled user's keys work again after it)."""

    @property
    def expiry_seconds(self) -> float:
        return self.expiry_minutes * 60

    @property
    def expiry_hours(self) -> float:
        """The same lifetime in hours, for readers written before JWT_EXPIRY_MINUTES."""
        return self.expiry_minutes / 60

    private_key_file: Path | None = None
    """RS256: the PEM private key; only the issuing service has it."""
    service_secret: SecretStr | None = None
    """RS256: an HS256 key with which a service that holds no private key (the jobs
    service) signs its own service token, and with which every verifier that has it
    checks such tokens; only for `service:<name>` subjects with the service role, never a
    user's, nor of another service than those of SERVICE_SECRET_SUBJECTS (the jobs
    service). Unused with HS256 (service tokens are signed with JWT_SECRET)."""
    jwks_url: str | None = None
    """RS256: where the issuer publishes its key set, fetched on first use and on key rotation."""
    jwks_file: Path | None = None
    """RS256: a key set on disk, for services that cannot or need not reach the issuer."""

    @model_validator(mode="after")
    def _check_keys(self) -> Self:
        if self.revocation_max_stale_seconds < self.revocation_seconds:
            raise ValueError("JWT_REVOCATION_MAX_STALE_SECONDS is below JWT_REVOCATION_SECONDS")
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
        elif self.service_secret is not None and (
            len(self.service_secret.get_secret_value().encode()) < MIN_SECRET_BYTES
        ):
            raise ValueError(f"JWT_SERVICE_SECRET needs at least {MIN_SECRET_BYTES} bytes")
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

    @property
    def key_id(self) -> str | None:
        """The id of the API key these claims came from, if they came from one."""
        return (
            self.jti.removeprefix(KEY_JTI_PREFIX) if self.jti.startswith(KEY_JTI_PREFIX) else None
        )


class TokenError(Exception):
    """A request's token was refused; `code` is stable for clients, the message is for humans.

    The message says what was wrong and never quotes the token, so it is safe to log and return.
    """

    def __init__(self, code: TokenErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: TokenErrorCode = code
        self.message = message


class TokenCheckUnavailable(Exception):
    """A token cannot be checked right now (the gateway, which knows API keys and
    revocations, cannot be reached): the request is refused with 503, never let through."""

    code = "token_check_unavailable"


KeyResolver = Callable[[str], Awaitable[Claims | None]]
"""What an API key stands for: its claims, or None for an unknown, expired or revoked key
(or one of a disabled user); TokenCheckUnavailable when that cannot be known now."""


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


def _service_secret_token(settings: TokenSettings, name: str) -> str:
    if settings.service_secret is None:
        raise ValueError("a service token under RS256 needs JWT_SERVICE_SECRET")
    now = int(time.time())
    payload = {
        "sub": f"{SERVICE}:{name}",
        "roles": [SERVICE],
        "teams": [],
        "iss": settings.issuer,
        "aud": settings.audience,
        "iat": now,
        "exp": now + int(settings.expiry_seconds),
        "jti": uuid.uuid4().hex,
    }
    secret = settings.service_secret.get_secret_value()
    return jwt.encode(payload, secret, "HS256", headers={"kid": SERVICE_SECRET_KID})


class TokenSigner:
    """Issues tokens; only the service that authenticates principals (the gateway) has one
    that signs users' tokens. Under RS256 another service with JWT_SERVICE_SECRET (and no
    private key) signs only its own service token."""

    def __init__(self, settings: TokenSettings, *, private_key: RSAPrivateKey | None = None):
        if settings.algorithm == "RS256" and private_key is None and not settings.service_secret:
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
        issued_at: int | None = None,
        jti: str | None = None,
    ) -> str:
        """A token for `subject`, valid for `expires_in` seconds (JWT_EXPIRY_MINUTES by
        default) from `issued_at` (now by default; the gateway gives a later second when
        the subject's not-before is in the current one). `jti` is random unless given (a
        token standing for an API key is `key:<key id>`, revoked with the key)."""
        if self._settings.algorithm == "RS256" and self._private_key is None:
            raise ValueError("signing a token with RS256 needs JWT_PRIVATE_KEY_FILE")
        lifetime = self._settings.expiry_seconds if expires_in is None else expires_in
        if lifetime <= 0:
            raise ValueError(f"a token must live a positive time, not {lifetime} s")
        now = int(time.time()) if issued_at is None else issued_at
        payload: dict[str, Any] = {
            "sub": subject,
            "roles": list(roles),
            "teams": list(teams),
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "iat": now,
            "exp": now + int(lifetime),
            "jti": jti or uuid.uuid4().hex,
        }
        if self._private_key is None:
            return jwt.encode(payload, self._settings.secret.get_secret_value(), "HS256")
        return jwt.encode(payload, self._private_key, "RS256", headers={"kid": self._kid})

    def service_token(self, name: str) -> str:
        """A token with which service `name` calls the others: signed like any token,
        or, under RS256 without the private key, with JWT_SERVICE_SECRET."""
        if not name:
            raise ValueError("a service token needs the service's name")
        if self._private_key is None and self._settings.algorithm == "RS256":
            return _service_secret_token(self._settings, name)
        return self.sign(f"{SERVICE}:{name}", roles=[SERVICE])

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The key set to publish at /.well-known/jwks.json; empty with HS256."""
        if self._private_key is None or self._kid is None:
            return {"keys": []}
        jwk = RSAAlgorithm.to_jwk(self._private_key.public_key(), as_dict=True)
        key = {"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}
        return {"keys": [{**key, "kid": self._kid, "alg": "RS256", "use": "sig"}]}


class TokenVerifier:
    """Checks tokens: signature, expiry, issuer and audience, then parses the claims; API
    keys through `key_resolver`; both against the revocation list, when there is one.

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
        revocations: RevocationList | None = None,
        key_resolver: KeyResolver | None = None,
        clock: Callable[[], float] = time.monotonic,
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
        self._revocations = revocations
        self._resolve_key = key_resolver
        self._clock = clock
        # SHA-256 of an API key -> (until, its claims) and -> until it may be asked again.
        self._keys: dict[bytes, tuple[float, Claims]] = {}
        self._refused_keys: dict[bytes, float] = {}

    @classmethod
    def from_settings(
        cls,
        settings: TokenSettings,
        http: httpx.AsyncClient | None = None,
        *,
        refetch_interval: float = JWKS_REFETCH_INTERVAL,
        revocation_source: RevocationSource | None = None,
        key_resolver: KeyResolver | None = None,
    ) -> TokenVerifier:
        """The verifier a service's settings describe. With JWT_GATEWAY_URL, API keys and
        revocations come from the gateway (through `http`); the gateway itself passes its
        own `revocation_source` and `key_resolver` (its database)."""
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
        if settings.gateway_url and (revocation_source is None or key_resolver is None):
            if http is None:
                raise ValueError("JWT_GATEWAY_URL needs the service's shared httpx.AsyncClient")
            base = settings.gateway_url.rstrip("/")
            revocation_source = revocation_source or http_source(http, f"{base}/auth/revocations")
            key_resolver = key_resolver or introspection(http, f"{base}/auth/introspect", settings)
        revocations = (
            RevocationList(
                revocation_source,
                refresh_seconds=settings.revocation_seconds,
                max_stale_seconds=settings.revocation_max_stale_seconds,
            )
            if revocation_source is not None
            else None
        )
        return cls(
            settings,
            keys=keys,
            http=http,
            refetch_interval=refetch_interval,
            revocations=revocations,
            key_resolver=key_resolver,
        )

    async def revocation_list(self) -> Revocations | None:
        """The revocation list tokens are checked against now (None: this verifier has
        none); RevocationsUnavailable when none is recent enough."""
        return None if self._revocations is None else await self._revocations.current()

    async def verify(self, token: str) -> Claims:
        """The claims of `token` (a JWT or an API key), or TokenError saying why it is
        refused; TokenCheckUnavailable when that cannot be known now."""
        if not token:
            raise TokenError("token_missing", "no token")
        if token.startswith(API_KEY_PREFIX):
            return await self._verify_key(token)
        known = self._verified.get(token)
        if known is not None and known.exp > time.time():
            claims = known
        else:
            claims = await self._verify(token)
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.pop(next(iter(self._verified)))  # the oldest goes
            self._verified[token] = claims
        reason = await self._revoked(claims)
        if reason is not None:
            raise TokenError("token_revoked", f"token was revoked: {reason}")
        return claims

    def forget(self) -> None:
        """Something was revoked through this process: forget what API keys stood for,
        and ask for the revocation list before the next token."""
        self._keys.clear()
        self._refused_keys.clear()
        if self._revocations is not None:
            self._revocations.invalidate()

    async def _revoked(self, claims: Claims) -> str | None:
        if self._revocations is None:
            return None
        try:
            revocations: Revocations = await self._revocations.current()
        except RevocationsUnavailable as error:
            raise TokenCheckUnavailable(str(error)) from None
        return revocations.reason(claims.sub, claims.iat, claims.key_id)

    async def _verify_key(self, key: str) -> Claims:
        if self._resolve_key is None:
            raise TokenError(
                "token_invalid", "API keys are not accepted here: this service has no gateway"
            )
        digest = hashlib.sha256(key.encode()).digest()
        now = self._clock()
        if self._refused_keys.get(digest, -math.inf) > now:
            raise TokenError("token_invalid", "unknown or revoked API key")
        cached = self._keys.get(digest)
        if cached is not None and cached[0] > now and await self._revoked(cached[1]) is None:
            return cached[1]
        # Unknown here, expired here, or changed since: ask the one that knows.
        self._keys.pop(digest, None)
        claims = await self._resolve_key(key)
        if claims is None:
            _remember(
                self._refused_keys, digest, now + self._settings.api_key_negative_cache_seconds
            )
            raise TokenError("token_invalid", "unknown or revoked API key")
        reason = await self._revoked(claims)
        if reason is not None:
            raise TokenError("token_revoked", f"API key was revoked: {reason}")
        keep = min(self._settings.api_key_cache_seconds, claims.exp - time.time())
        if keep > 0:
            _remember(self._keys, digest, (now + keep, claims))
        return claims

    async def _verify(self, token: str) -> Claims:
        key: RSAPublicKey | str
        algorithm = self._settings.algorithm
        service_secret = self._settings.service_secret
        by_service_secret = False
        if algorithm == "HS256":
            key = self._settings.secret.get_secret_value()
        elif service_secret is not None and _kid(token) == SERVICE_SECRET_KID:
            # A service's own token under RS256 (see TokenSettings.service_secret).
            key, algorithm, by_service_secret = service_secret.get_secret_value(), "HS256", True
        else:
            key = await self._key(_kid(token))
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
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
            claims = Claims.model_validate(payload)
        except ValidationError as error:
            fields = ", ".join(str(e["loc"][0]) for e in error.errors() if e["loc"])
            raise TokenError("token_invalid", f"token has malformed claims: {fields}") from None
        if by_service_secret and not (
            claims.sub in SERVICE_SECRET_SUBJECTS and claims.roles == [SERVICE] and not claims.teams
        ):
            raise TokenError(
                "token_invalid", "a token signed with the service secret must be a service's"
            )
        return claims

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


def _remember(cache: dict[bytes, Any], key: bytes, value: Any) -> None:
    cache.pop(key, None)
    if len(cache) >= API_KEYS_KEPT:
        cache.pop(next(iter(cache)))  # the oldest goes
    cache[key] = value


def introspection(http: httpx.AsyncClient, url: str, settings: TokenSettings) -> KeyResolver:
    """Resolves API keys at the gateway's `url` (…/auth/introspect): its claims on 200,
    None on 401, TokenCheckUnavailable on anything else."""

    async def resolve(key: str) -> Claims | None:
        try:
            response = await http.post(url, json={"token": key})
        except httpx.HTTPError as error:
            raise TokenCheckUnavailable(f"the gateway cannot check API keys: {error}") from None
        if response.status_code == 401:
            return None
        if response.status_code != 200:
            message = f"the gateway answered {response.status_code} when asked about an API key"
            raise TokenCheckUnavailable(message)
        try:
            claims = Claims.model_validate_json(response.content)
        except ValidationError:
            raise TokenCheckUnavailable(
                "the gateway's answer about an API key is not claims"
            ) from None
        if (claims.iss, claims.aud) != (settings.issuer, settings.audience):
            return None
        return claims

    return resolve
