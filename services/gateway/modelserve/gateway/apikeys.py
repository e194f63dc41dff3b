"""API keys as programs hold them: `msk_<key id>_<secret>`.

The key id finds the row; the secret is checked against its SHA-256. A fast hash is right
here, unlike for passwords: the secret is 256 random bits, so there is nothing to guess
and no dictionary to slow down, and a key is checked on every request it makes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from modelserve.common.tokens import API_KEY_PREFIX, KEY_JTI_PREFIX

__all__ = ["KEY_JTI_PREFIX", "ApiKeyParts", "new_key", "parse_key", "secret_matches"]

_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 12  # 71 bits: ids only need to be unique, and are not secret
SECRET_LENGTH = 43  # 256 bits of base62


@dataclass(frozen=True)
class ApiKeyParts:
    key_id: str
    secret: str

    @property
    def key(self) -> str:
        """The whole key, as the client sends it."""
        return f"{API_KEY_PREFIX}{self.key_id}_{self.secret}"

    @property
    def secret_hash(self) -> bytes:
        return hash_secret(self.secret)


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_key() -> ApiKeyParts:
    return ApiKeyParts(_random(ID_LENGTH), _random(SECRET_LENGTH))


def parse_key(key: str) -> ApiKeyParts | None:
    """The parts of `key`, or None when it cannot be one of ours (then no query is made)."""
    if not key.startswith(API_KEY_PREFIX):
        return None
    key_id, separator, secret = key.removeprefix(API_KEY_PREFIX).partition("_")
    if not separator or len(key_id) != ID_LENGTH or len(secret) != SECRET_LENGTH:
        return None
    if not all(char in _ALPHABET for char in key_id + secret):
        return None
    return ApiKeyParts(key_id, secret)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def secret_matches(parts: ApiKeyParts, stored_hash: bytes) -> bool:
    """In constant time, so that response times say nothing about the stored hash."""
    return hmac.compare_digest(parts.secret_hash, stored_hash)
