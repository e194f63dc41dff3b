"""The verifier's revocation list and API keys, with stand-in sources (the gateway's real
ones are tested in tests/gateway/test_revocation.py): how often it asks, how long it trusts
an old list, and that it fails closed."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from modelserve.common.revocations import (
    RevocationList,
    Revocations,
    RevocationsUnavailable,
    http_source,
    subject_digest,
)
from modelserve.common.tokens import (
    Claims,
    TokenCheckUnavailable,
    TokenError,
    TokenSettings,
    TokenSigner,
    TokenVerifier,
)

SECRET = "test-secret-0123456789abcdef0123456789"
KEY = "msk_abcdefghijkl_" + "s" * 43


@pytest.fixture(autouse=True)
def _no_token_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("JWT_") or name == "MODELSERVE_DEVELOPMENT":
            monkeypatch.delenv(name)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """Answers `listed` (or fails while `failing`), counting the requests."""

    def __init__(self) -> None:
        self.listed = Revocations(version="1")
        self.failing = False
        self.requests = 0

    async def __call__(self) -> Revocations:
        self.requests += 1
        if self.failing:
            raise RevocationsUnavailable("the gateway is away")
        return self.listed


def _list(source: Source, clock: Clock) -> RevocationList:
    return RevocationList(source, refresh_seconds=2, max_stale_seconds=30, clock=clock)


def test_a_list_is_asked_for_at_most_once_per_refresh_interval() -> None:
    source, clock = Source(), Clock()
    revocations = _list(source, clock)

    async def scenario() -> None:
        await asyncio.gather(*(revocations.current() for _ in range(20)))
        clock.now += 1.9
        await revocations.current()
        assert source.requests == 1
        clock.now += 0.1
        await asyncio.gather(*(revocations.current() for _ in range(20)))
        assert source.requests == 2

    asyncio.run(scenario())


def test_a_failing_source_is_trusted_for_the_stale_bound_then_fails_closed() -> None:
    source, clock = Source(), Clock()
    revocations = _list(source, clock)

    async def scenario() -> None:
        assert (await revocations.current()).version == "1"
        source.failing = True
        clock.now += 29
        assert (await revocations.current()).version == "1"  # within the bound
        tries = source.requests
        await revocations.current()
        assert source.requests == tries  # a failed try is not repeated at once
        clock.now += 1
        with pytest.raises(RevocationsUnavailable):
            await revocations.current()
        source.failing = False
        clock.now += 2
        assert (await revocations.current()).version == "1"

    asyncio.run(scenario())


def test_without_any_list_tokens_cannot_be_checked() -> None:
    source, clock = Source(), Clock()
    source.failing = True
    with pytest.raises(RevocationsUnavailable):
        asyncio.run(_list(source, clock).current())


def test_invalidate_asks_again_on_the_next_use() -> None:
    source, clock = Source(), Clock()
    revocations = _list(source, clock)

    async def scenario() -> None:
        await revocations.current()
        source.listed = Revocations(version="2")
        revocations.invalidate()
        assert (await revocations.current()).version == "2"

    asyncio.run(scenario())


def test_a_revoked_key_and_a_user_not_before_void_claims() -> None:
    listed = Revocations(version="v", users={subject_digest("alice"): 1000}, keys=frozenset({"k1"}))
    assert listed.reason("alice", 999, None) is not None
    assert listed.reason("alice", 1000, None) is None  # issued in the not-before second
    assert listed.reason("bob", 10, "k2") is None
    assert listed.reason("bob", 10, "k1") == "the API key was revoked"


def test_the_http_source_sends_the_last_version_and_keeps_the_list_on_304() -> None:
    seen: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("if-none-match"))
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304)
        return httpx.Response(200, json={"version": "v1", "users": {}, "keys": ["k"]})

    async def scenario() -> list[Revocations]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
            fetch = http_source(http, "http://gateway.test/auth/revocations")
            return [await fetch(), await fetch()]

    first, second = asyncio.run(scenario())
    assert first == second and first.keys == {"k"}
    assert seen == [None, '"v1"']


# --- the verifier --------------------------------------------------------------------


def _settings(**overrides: Any) -> TokenSettings:
    return TokenSettings(**{"secret": SecretStr(SECRET), **overrides})


def _key_claims(sub: str = "alice", iat: int | None = None) -> Claims:
    now = int(time.time())
    return Claims(
        sub=sub,
        roles=["user"],
        iss="modelserve",
        aud="modelserve",
        iat=now if iat is None else iat,
        exp=now + 900,
        jti="key:abcdefghijkl",
    )


def _verifier(
    source: Source, resolve: Callable[[str], Awaitable[Claims | None]], clock: Clock
) -> TokenVerifier:
    settings = _settings()
    return TokenVerifier(
        settings,
        revocations=RevocationList(source, refresh_seconds=2, max_stale_seconds=30, clock=clock),
        key_resolver=resolve,
        clock=clock,
    )


def test_a_token_issued_before_its_users_not_before_is_revoked() -> None:
    source, clock = Source(), Clock()
    signer = TokenSigner.from_settings(_settings())
    token = signer.sign("alice")
    verifier = _verifier(source, lambda key: asyncio.sleep(0, None), clock)

    async def scenario() -> TokenError:
        await verifier.verify(token)
        source.listed = Revocations(version="2", users={subject_digest("alice"): 2**40})
        clock.now += 2
        with pytest.raises(TokenError) as caught:
            await verifier.verify(token)
        return caught.value

    assert asyncio.run(scenario()).code == "token_revoked"


def test_keys_are_cached_briefly_refused_keys_too_and_revocation_beats_the_cache() -> None:
    source, clock = Source(), Clock()
    asked: list[str] = []
    answer: list[Claims | None] = [_key_claims()]

    async def resolve(key: str) -> Claims | None:
        asked.append(key)
        return answer[0]

    verifier = _verifier(source, resolve, clock)

    async def scenario() -> None:
        for _ in range(5):
            assert (await verifier.verify(KEY)).sub == "alice"
        assert len(asked) == 1
        # The user is disabled: the list says so before the cached claims expire.
        source.listed = Revocations(version="2", users={subject_digest("alice"): 2**40})
        answer[0] = None
        clock.now += 2
        with pytest.raises(TokenError):
            await verifier.verify(KEY)
        assert len(asked) == 2  # asked again, refused
        for _ in range(5):
            with pytest.raises(TokenError):
                await verifier.verify(KEY)
        assert len(asked) == 2  # the refusal is remembered
        clock.now += 10
        answer[0] = _key_claims(iat=2**40)
        assert (await verifier.verify(KEY)).sub == "alice"  # enabled again
        assert len(asked) == 3

    asyncio.run(scenario())


def test_a_service_without_a_gateway_refuses_keys() -> None:
    verifier = TokenVerifier.from_settings(_settings())
    with pytest.raises(TokenError) as caught:
        asyncio.run(verifier.verify(KEY))
    assert caught.value.code == "token_invalid"


def test_an_unreachable_gateway_makes_tokens_unavailable_not_valid() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def scenario() -> list[BaseException]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
            settings = _settings(gateway_url="http://gateway.test")
            verifier = TokenVerifier.from_settings(settings, http)
            token = TokenSigner.from_settings(settings).sign("alice")
            results = await asyncio.gather(
                verifier.verify(token), verifier.verify(KEY), return_exceptions=True
            )
            return [result for result in results if isinstance(result, BaseException)]

    errors = asyncio.run(scenario())
    assert [type(error) for error in errors] == [TokenCheckUnavailable] * 2
