"""Sign-in cannot be brute-forced or used to starve others: POST /auth/token is throttled
per user and per client address, Argon2 work waits in a bounded queue, and unknown API
keys cost no database query the second time. The gateway as a process on real PostgreSQL.

Client addresses come from X-Forwarded-For, which the gateway believes from 127.0.0.1 (as
uvicorn does by default: FORWARDED_ALLOW_IPS).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx
import pytest

from modelserve.testbed.platform import RunningService
from modelserve.testbed.testing_clients import metric

pytestmark = pytest.mark.postgres

StartGateway = Callable[..., RunningService]
# Generous: a slow machine must not see the window close between two attempts.
WINDOW = {"GATEWAY_SIGN_IN_WINDOW_SECONDS": "3600"}


def _sign_in(url: str, username: str, password: str, address: str) -> httpx.Response:
    return httpx.post(
        f"{url}/auth/token",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": address},
        timeout=60,
    )


def test_wrong_passwords_for_one_user_get_429_with_retry_after(
    start_gateway: StartGateway,
) -> None:
    gateway = start_gateway(**WINDOW, GATEWAY_SIGN_IN_FAILURES_PER_USER="5")
    # From fifty addresses: the limit is the user's, wherever the guesses come from.
    answers = [_sign_in(gateway.url, "admin", f"guess-{n}", f"10.0.0.{n + 1}") for n in range(50)]
    statuses = [answer.status_code for answer in answers]
    assert statuses == [401] * 5 + [429] * 45, statuses
    throttled = answers[-1]
    assert throttled.json()["error"]["code"] == "too_many_sign_ins"
    assert 0 < int(throttled.headers["Retry-After"]) <= 3600
    # The guesses past the limit cost no Argon2 work.
    assert metric(gateway.url, "modelserve_gateway_password_checks_total") == 5
    # Another user is not held up by the first one's attacker.
    assert _sign_in(gateway.url, "nobody", "x", "10.0.1.1").status_code == 401


def test_concurrent_guesses_count_before_they_are_checked(
    start_gateway: StartGateway,
) -> None:
    """30 wrong passwords for one user sent at once: only the limit's worth is checked;
    the rest are refused without Argon2 work (an attempt counts from the moment it is
    taken in, not once its check is over)."""
    gateway = start_gateway(**WINDOW, GATEWAY_SIGN_IN_FAILURES_PER_USER="5")

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as http:
            answers = await asyncio.gather(
                *(
                    http.post(
                        "/auth/token",
                        json={"username": "admin", "password": f"guess-{n}"},
                        headers={"X-Forwarded-For": f"10.2.0.{n + 1}"},
                    )
                    for n in range(30)
                )
            )
        return [answer.status_code for answer in answers]

    statuses = asyncio.run(burst())
    assert sorted(statuses) == [401] * 5 + [429] * 25, statuses
    assert metric(gateway.url, "modelserve_gateway_password_checks_total") == 5


def test_one_address_trying_many_users_gets_429(
    start_gateway: StartGateway, gateway_env: dict[str, str]
) -> None:
    gateway = start_gateway(**WINDOW, GATEWAY_SIGN_IN_FAILURES_PER_ADDRESS="20")
    statuses = [
        _sign_in(gateway.url, f"user-{n}", "a-password", "10.1.0.1").status_code for n in range(50)
    ]
    assert statuses == [401] * 20 + [429] * 30, statuses
    # Another address is not held up: the admin signs in from there, again and again
    # (successes are not counted; many people may share an address).
    password = gateway_env["GATEWAY_ADMIN_PASSWORD"]
    for _ in range(25):
        assert _sign_in(gateway.url, "admin", password, "10.1.0.2").status_code == 200


def test_the_argon2_queue_is_bounded_with_503(start_gateway: StartGateway) -> None:
    gateway = start_gateway(
        **WINDOW, GATEWAY_PASSWORD_CHECKS_AT_ONCE="1", GATEWAY_PASSWORD_CHECK_QUEUE="1"
    )

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        "/auth/token",
                        json={"username": f"user-{n}", "password": "a-password"},
                        headers={"X-Forwarded-For": f"10.2.0.{n + 1}"},
                    )
                    for n in range(30)
                )
            )

    answers = asyncio.run(flood())
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) == {401, 503}, statuses
    busy = next(answer for answer in answers if answer.status_code == 503)
    assert busy.json()["error"]["code"] == "sign_in_busy"
    assert busy.headers["Retry-After"] == "1"
    # Only admitted sign-ins were hashed: at most one running and one waiting at a time.
    assert metric(gateway.url, "modelserve_gateway_password_checks_total") == statuses.count(401)


def test_an_unknown_api_key_costs_one_query(start_gateway: StartGateway) -> None:
    # Remembered for longer than 50 requests can take on a loaded machine (the default
    # 10 s ran out in one CI run, and a second query was made).
    gateway = start_gateway(JWT_API_KEY_NEGATIVE_CACHE_SECONDS="600")
    unknown = f"msk_{uuid.uuid4().hex[:12]}_{'a' * 43}"
    headers = {"Authorization": f"Bearer {unknown}"}
    for _ in range(50):
        answer = httpx.get(f"{gateway.url}/auth/me", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "token_invalid"
    assert metric(gateway.url, "modelserve_gateway_api_key_queries_total") == 1
