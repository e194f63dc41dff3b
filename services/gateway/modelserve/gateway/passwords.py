"""Password hashes: Argon2id (RFC 9106) through argon2-cffi, with its default parameters
(64 MiB, 3 passes, 4 lanes), which the library raises as hardware gets faster.

Hashing takes tens of milliseconds of CPU and 64 MiB, so it runs in a thread, and the
caller bounds how many run at once (`Identity` does).
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # immutable: parameters only


def _hash(password: str) -> str:
    return _HASHER.hash(password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hash, password)


async def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches the hash `stored`; a malformed hash matches nothing."""
    return await asyncio.to_thread(_verify, stored, password)


def needs_rehash(stored: str) -> bool:
    """Whether `stored` was made with weaker parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True
